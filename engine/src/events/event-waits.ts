import type { JetStreamClient } from "@nats-io/jetstream";
import {
  AppendConflictError,
  compileEventFilter,
  type EventFilter,
  EventTypes,
  eventKeyMatches,
  makeEvent,
  type PushedEvent,
  PushedEventSchema,
  type RunState,
  RunStatuses,
  Streams,
  subjects,
  type TaskjetEventInput,
} from "@taskjet/schemas";
import type { Logger } from "pino";
import { scan } from "../log/scan.js";
import type { RunStates } from "../projector/projector.js";
import { failedAppendDelayMs } from "../timers/retry-append.js";

interface Wait {
  runId: string;
  taskRunId: string;
  attempt: number;
  index: number;
  key: string;
  filter: EventFilter | undefined;
  /** The events stream's last sequence when the wait began: only events stored after it are for this wait. */
  afterSeq: number;
}

export interface EventWaitsOptions {
  js: JetStreamClient;
  ns: string;
  log: Logger;
  states: Pick<RunStates, "get">;
  append: (event: TaskjetEventInput, expectedSeq: number) => Promise<number>;
}

/**
 * Durable tasks waiting for a pushed event (`ctx.waitForEvent`). A wait is registered when its
 * `DurableWaitingForEvent` is folded, and then the events stream is read from the sequence the worker noted before
 * it asked: an event pushed between the two is found by that read, one pushed later by the router (`offer`). Either
 * way the engine appends `DurableEventReceived` (CAS), which queues the task's next attempt.
 */
export class EventWaits {
  private readonly waits = new Map<string, Wait>();

  constructor(private readonly o: EventWaitsOptions) {}

  /** Registers, keeps or drops a run's waits after any change. */
  onState(state: RunState): void {
    for (const task of state.tasks) {
      const wait = task.checkpoints?.find((c) => c.kind === "event" && !c.done);
      const known = this.waits.get(task.taskRunId);
      if (task.status !== RunStatuses.pending || !wait) {
        if (known) this.waits.delete(task.taskRunId);
        continue;
      }
      if (known?.attempt === task.attempt && known.index === wait.index) continue;
      let filter: EventFilter | undefined;
      try {
        filter = wait.filter ? compileEventFilter(wait.filter, "filter") : undefined;
      } catch (err) {
        this.o.log.error({ err, runId: state.runId }, "durable wait with an invalid filter: it cannot match");
        continue;
      }
      const entry: Wait = {
        runId: state.runId,
        taskRunId: task.taskRunId,
        attempt: task.attempt,
        index: wait.index,
        key: wait.value,
        filter,
        afterSeq: wait.afterSeq ?? 0,
      };
      this.waits.set(task.taskRunId, entry);
      this.catchUp(entry).catch((err) =>
        this.o.log.warn({ err, runId: state.runId }, "could not read the events a wait may have missed"),
      );
    }
  }

  /**
   * An event the router read (`seq` in the events stream): every wait it matches receives it. The router may be behind
   * (a backlog, a restart), so an event stored before a wait began can come after it: not for that wait.
   */
  offer(event: PushedEvent, seq: number): void {
    for (const wait of this.waits.values()) {
      if (seq > wait.afterSeq && this.matches(wait, event)) this.receive(wait, event);
    }
  }

  private async catchUp(wait: Wait): Promise<void> {
    const filter = wait.key.includes("*") ? subjects.eventsAll(this.o.ns) : subjects.event(this.o.ns, wait.key);
    let found: PushedEvent | undefined;
    await scan(this.o.js, Streams.events, filter, { startSeq: wait.afterSeq + 1 }, (m) => {
      if (found) return;
      const parsed = PushedEventSchema.safeParse(m.json());
      if (parsed.success && this.matches(wait, parsed.data)) found = parsed.data;
    });
    if (found && this.waits.get(wait.taskRunId) === wait) this.receive(wait, found);
  }

  private matches(wait: Wait, event: PushedEvent): boolean {
    if (!eventKeyMatches(wait.key, event.key)) return false;
    if (!wait.filter) return true;
    try {
      return wait.filter({ payload: event.payload, additional_metadata: event.additionalMetadata }) === true;
    } catch {
      return false;
    }
  }

  /** `conflicts` and `failures`: the appends tried so far that met another write, or failed otherwise. */
  private receive(wait: Wait, event: PushedEvent, conflicts = 0, failures = 0): void {
    const state = this.o.states.get(wait.runId);
    const task = state?.tasks.find((t) => t.taskRunId === wait.taskRunId);
    if (!state || task?.status !== RunStatuses.pending || task.attempt !== wait.attempt) return;
    this.waits.delete(wait.taskRunId); // one event per wait
    const received = makeEvent(EventTypes.DurableEventReceived, {
      runId: wait.runId,
      taskRunId: wait.taskRunId,
      data: {
        attempt: wait.attempt + 1,
        index: wait.index,
        event: { id: event.id, key: event.key, payload: event.payload },
      },
    });
    this.o.append(received, state.lastSeq).catch((err) => {
      const conflict = err instanceof AppendConflictError;
      if (conflict && conflicts >= 20) {
        this.o.log.warn({ err, runId: wait.runId }, "could not record a received event");
        return;
      }
      // Someone wrote first: decide again on the folded tail. Anything else (NATS unavailable) would leave the run
      // waiting until the next leader, as nothing folds: tried again, later and later, while the run still waits.
      if (!conflict && failures === 0)
        this.o.log.warn({ err, runId: wait.runId }, "could not record a received event: trying again");
      this.waits.set(wait.taskRunId, wait);
      const [c, f] = conflict ? [conflicts + 1, failures] : [conflicts, failures + 1];
      const delay = conflict ? 50 : failedAppendDelayMs(failures);
      setTimeout(() => this.receive(wait, event, c, f), delay).unref();
    });
  }
}
