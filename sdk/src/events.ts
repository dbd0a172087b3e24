import {
  describeValue,
  EventTriggerSchema,
  encodeJsonObject,
  eventRunId,
  newId,
  type PushedEvent,
  PushedEventSchema,
  parseWith,
  refuseUnknownKeys,
  Streams,
  subjects,
  ValidationError,
} from "@taskjet/schemas";
import { type Connection, whyPublishFailed, withProvisioningHint } from "./connection.js";
import { assertWritable } from "./debug.js";
import { readStream } from "./read-stream.js";
import { listLimit } from "./runs.js";
import type { JsonObject } from "./task.js";

/** Options of `events.push`. */
export interface PushOptions {
  /** Kept with the event and with every run it starts. */
  additionalMetadata?: Record<string, string>;
  /** Priority of the runs it starts: 1 (low) to 3 (high). */
  priority?: 1 | 2 | 3;
}

/** A pushed event as `events.list` shows it, with the runs it started. */
export interface ListedEvent extends PushedEvent {
  runs: { taskName: string; runId: string }[];
}

/** How far back `events.list` reads. */
const LIST_WINDOW = 10_000;
const ITEM_KEYS = ["payload", "additionalMetadata", "priority"];

/** Pushed events (`TJ_EVENTS`): stored whatever is listening, routed by the engine to tasks with `onEvents`. */
export class EventsClient {
  constructor(
    private readonly conn: Connection,
    private readonly ns: string,
    /** Task names with `onEvents` the caller knows of, to find the runs an event started. */
    private readonly taskNames: () => Promise<string[]>,
  ) {}

  /**
   * Stores an event; every task whose `onEvents` matches `key` gets one run with `payload` as its input.
   * @throws ValidationError naming the field and value
   * @example await tj.events.push("user:created", { userId: "u1" }, { additionalMetadata: { source: "signup" } })
   */
  async push(key: string, payload: JsonObject, options: PushOptions = {}): Promise<{ eventId: string }> {
    const [result] = await this.publishAll(key, [{ payload, ...options }], false);
    return result as { eventId: string };
  }

  /** Stores many events of one key, pipelined; their ids in order. Every item is validated before any is sent. */
  async bulkPush(
    key: string,
    events: readonly ({ payload: JsonObject } & PushOptions)[],
  ): Promise<{ eventId: string }[]> {
    if (!Array.isArray(events)) {
      throw new ValidationError([{ path: "events", message: "must be an array of { payload, additionalMetadata? }" }]);
    }
    return this.publishAll(key, events, true);
  }

  /**
   * The newest events (of one key, or all), newest first, each with the runs it started (for the tasks registered
   * with `onEvents` now).
   */
  async list(options: { key?: string; limit?: number } = {}): Promise<ListedEvent[]> {
    const limit = listLimit(options, ["key", "limit"], 50);
    const filter = options.key ? subjects.event(this.ns, checkKey(options.key, "key")) : subjects.eventsAll(this.ns);
    const info = await this.conn.jsm.streams
      .info(Streams.events)
      .catch(withProvisioningHint(this.conn, Streams.events));
    const events: PushedEvent[] = [];
    const from = { startSeq: Math.max(1, info.state.last_seq - LIST_WINDOW) };
    for await (const m of readStream(this.conn.js, Streams.events, filter, from)) {
      const parsed = PushedEventSchema.safeParse(m.json());
      if (parsed.success) events.push(parsed.data);
    }
    const newest = events.reverse().slice(0, limit);
    const tasks = await this.taskNames();
    return Promise.all(
      newest.map(async (e) => {
        const runs: { taskName: string; runId: string }[] = [];
        for (const taskName of tasks) {
          const runId = eventRunId(e.id, taskName);
          const last = await this.conn.jsm.direct
            .getMessage(Streams.history, { last_by_subj: subjects.history(this.ns, runId) })
            .catch(() => null);
          if (last) runs.push({ taskName, runId });
        }
        return { ...e, runs };
      }),
    );
  }

  private async publishAll(
    key: string,
    items: readonly ({ payload: JsonObject } & PushOptions)[],
    bulk: boolean,
  ): Promise<{ eventId: string }[]> {
    checkKey(key, "key");
    assertWritable(`pushing event ${key}`);
    const events = items.map((item, i) => {
      const at = bulk ? `[${i}].` : "";
      if (typeof item !== "object" || item === null) {
        throw new ValidationError([{ path: `[${i}]`, message: "must be { payload, additionalMetadata?, priority? }" }]);
      }
      refuseUnknownKeys(item, ITEM_KEYS, bulk ? `[${i}]` : "", "part of a pushed event");
      encodeJsonObject(item.payload, `${at}payload`, this.conn.payloadLimit);
      return parseWith(
        PushedEventSchema,
        {
          v: 1,
          id: newId(),
          key,
          payload: item.payload,
          additionalMetadata: item.additionalMetadata ?? {},
          ...(item.priority === undefined ? {} : { priority: item.priority }),
          at: new Date().toISOString(),
          source: "push",
        },
        bulk ? `[${i}]` : "",
      );
    });
    const hint = withProvisioningHint(this.conn, Streams.events);
    return Promise.all(
      events.map(async (e) => {
        await this.conn.js
          .publish(subjects.event(this.ns, key), JSON.stringify(e), { msgID: e.id })
          .catch(async (err: unknown) => hint(await whyPublishFailed(this.conn, Streams.events, err)));
        return { eventId: e.id };
      }),
    );
  }
}

function checkKey(key: unknown, field: string): string {
  const parsed = EventTriggerSchema.shape.key.safeParse(key);
  if (!parsed.success || typeof key !== "string" || key.includes("*")) {
    throw new ValidationError([
      {
        path: field,
        message: `must be an event key (letters, digits, _, -, : and inner dots), got ${describeValue(key)}`,
      },
    ]);
  }
  return key;
}
