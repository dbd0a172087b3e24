import {
  AckPolicy,
  type ConsumerMessages,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import {
  AppendConflictError,
  consumers,
  eventKeyMatches,
  eventRunId,
  jsonTooDeep,
  MESSAGE_JSON_DEPTH,
  newRunCreated,
  type PushedEvent,
  PushedEventSchema,
  Streams,
  subjects,
  type TaskjetEventInput,
} from "@taskjet/schemas";
import type { Logger } from "pino";
import type { CompiledDefinition } from "../scheduler/flow.js";
import type { IdempotentRuns } from "./idempotent-runs.js";

export interface EventRouterOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  ns: string;
  log: Logger;
  /** The registered task definitions, with their `onEvents`. */
  definitions: () => Iterable<CompiledDefinition>;
  append: (event: TaskjetEventInput, expectedSeq: number) => Promise<number>;
  idempotent: IdempotentRuns;
  /** Durable tasks waiting for events: offered every event routed. */
  eventWaits: { offer(event: PushedEvent, seq: number): void };
}

/**
 * Routes pushed events to the tasks whose `onEvents` match: one run per (event, task), with a run id derived from
 * both and CAS on sequence 0, acknowledged only once every run exists. A redelivery after a crash finds the runs made
 * and makes no more: exactly once per (event, task). One durable consumer per namespace, shared by engine replicas.
 */
export class EventRouter {
  private messages: ConsumerMessages | undefined;

  constructor(private readonly o: EventRouterOptions) {}

  async start(): Promise<void> {
    const { js, jsm, ns } = this.o;
    const name = consumers.eventRouter(ns);
    await jsm.consumers.add(Streams.events, {
      durable_name: name,
      filter_subject: subjects.eventsAll(ns),
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(30_000),
      max_ack_pending: 1000,
    });
    const consumer = await js.consumers.get(Streams.events, name);
    this.messages = await consumer.consume({
      max_messages: 500,
      expires: 5000,
      callback: (m) => {
        this.route(m).catch((err) => {
          this.o.log.warn({ err, seq: m.seq }, "event not routed: redelivered shortly");
          m.nak(1000);
        });
      },
    });
  }

  async stop(): Promise<void> {
    await this.messages?.close().catch(() => undefined);
  }

  private async route(m: JsMsg): Promise<void> {
    let event: PushedEvent;
    try {
      const raw = m.json();
      // Refused here, or every append of a run made from it would fail (and the event be redelivered forever).
      if (jsonTooDeep(raw, MESSAGE_JSON_DEPTH)) {
        throw new Error(`nests objects and arrays deeper than ${MESSAGE_JSON_DEPTH} levels`);
      }
      event = PushedEventSchema.parse(raw);
    } catch (err) {
      this.o.log.error({ err, seq: m.seq, subject: m.subject }, "malformed event left in the stream, not routed");
      m.term();
      return;
    }
    const targets = [...this.o.definitions()].filter((def) => this.matches(def, event));
    await Promise.all(targets.map((def) => this.startRun(def, event)));
    this.o.eventWaits.offer(event, m.seq);
    m.ack();
    if (targets.length > 0) {
      this.o.log.debug({ eventId: event.id, key: event.key, tasks: targets.map((d) => d.name) }, "event routed");
    }
  }

  private matches(def: CompiledDefinition, event: PushedEvent): boolean {
    return def.onEvents.some((t) => {
      if (!eventKeyMatches(t.key, event.key)) return false;
      if (!t.filter) return true;
      try {
        return t.filter({ payload: event.payload, additional_metadata: event.additionalMetadata }) === true;
      } catch (err) {
        this.o.log.warn({ err, task: def.name, eventId: event.id }, "event filter failed: no run");
        return false;
      }
    });
  }

  private async startRun(def: CompiledDefinition, event: PushedEvent): Promise<void> {
    const taskName = def.name;
    const runId = await this.o.idempotent.claim(
      def,
      event.payload,
      event.additionalMetadata,
      eventRunId(event.id, taskName),
    );
    if (!runId) return; // an earlier run holds the task's idempotency key
    const created = newRunCreated({
      runId,
      taskName,
      input: event.payload,
      trigger: event.source.startsWith("webhook:")
        ? { kind: "webhook", webhook: event.source.slice("webhook:".length), eventId: event.id, key: event.key }
        : { kind: "event", eventId: event.id, key: event.key },
      additionalMetadata: event.additionalMetadata,
      priority: event.priority ?? def.defaultPriority ?? 1,
      scheduleTimeoutMs: def.scheduleTimeoutMs,
      workflow: def.workflow,
    });
    try {
      await this.o.append(created, 0);
    } catch (err) {
      if (!(err instanceof AppendConflictError)) throw err; // made on an earlier delivery
    }
  }
}
