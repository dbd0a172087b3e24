import { JetStreamApiError } from "@nats-io/jetstream/internal";
import { type Assignment, EventTypes, encodeEvent, makeEvent, subjects } from "@taskjet/schemas";
import { describe, expect, it } from "vitest";
import type { Connection } from "../connection.js";
import { reportResult } from "./reports.js";

const ns = "ns1";
const runId = "R1";

/**
 * A stream whose leader is behind for its first `behindFor` answers: it has not applied the run's `RunCreated` yet, so
 * a CAS on its sequence conflicts and a read finds no event. Then it catches up.
 */
function laggingLeader(behindFor: number) {
  const created = makeEvent(EventTypes.RunCreated, {
    runId,
    data: {
      workflowName: "t",
      input: {},
      additionalMetadata: {},
      priority: 1,
      tasks: [{ taskRunId: `${runId}-0`, taskName: "t" }],
      trigger: { kind: "run" },
    },
  });
  const log: { seq: number; type: string; data: string }[] = [
    { seq: 7, type: EventTypes.RunCreated, data: encodeEvent(created) },
  ];
  let answers = 0;
  const behind = () => answers++ < behindFor;
  const conn = {
    scoped: false,
    publisher: {
      publish: async (subject: string, data: string, o: { expect: { lastSubjectSequence: number } }) => {
        expect(subject).toBe(subjects.history(ns, runId));
        const last = behind() ? 0 : (log.at(-1)?.seq ?? 0);
        if (o.expect.lastSubjectSequence !== last) {
          throw new JetStreamApiError({ code: 400, err_code: 10071, description: `wrong last sequence: ${last}` });
        }
        const seq = last + 1;
        log.push({ seq, type: JSON.parse(data).type, data });
        return { seq, duplicate: false };
      },
    },
    jsm: {
      streams: {
        getMessage: async (_stream: string, q: { seq: number }) => {
          if (behind()) return null;
          const m = log.find((e) => e.seq >= q.seq);
          return m ? { seq: m.seq, data: new TextEncoder().encode(m.data) } : null;
        },
      },
    },
  } as unknown as Connection;
  return { conn, log };
}

const assignment = { runId, taskRunId: `${runId}-0`, attempt: 0, expectedSeq: 7 } as Assignment;
const reporter = (conn: Connection) => ({ conn, ns, workerId: "w1", workerName: "w" });
const started = { workerName: "w", assignedAt: new Date().toISOString(), at: new Date().toISOString() };

describe("reports", () => {
  it("reports - a leader behind the assignment's sequence is waited for: the result is applied, not ignored", async () => {
    const { conn, log } = laggingLeader(4);
    const applied = await reportResult(reporter(conn), assignment, 7, { ok: true, output: { x: 1 } }, 1 << 20, started);
    expect(applied).toBe(true);
    expect(log.map((e) => e.type)).toEqual([EventTypes.RunCreated, EventTypes.TaskCompleted]);
  });

  it("reports - a log that moved past the attempt makes the result stale: recorded as ReportIgnored", async () => {
    const { conn, log } = laggingLeader(0);
    // Another attempt's start took the run on after the assignment was made.
    const other = makeEvent(EventTypes.TaskStarted, {
      runId,
      taskRunId: `${runId}-0`,
      data: { attempt: 0, workerId: "w2", workerName: "w2", assignedAt: new Date().toISOString() },
    });
    log.push({ seq: 8, type: EventTypes.TaskStarted, data: encodeEvent(other) });
    const applied = await reportResult(reporter(conn), assignment, 7, { ok: true, output: {} }, 1 << 20, started);
    expect(applied).toBe(false);
    expect(log.map((e) => e.type)).toEqual([EventTypes.RunCreated, EventTypes.TaskStarted, EventTypes.ReportIgnored]);
  });
});
