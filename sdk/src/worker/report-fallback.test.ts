import { JetStreamApiError } from "@nats-io/jetstream/internal";
import { InvalidArgumentError } from "@nats-io/transport-node";
import { type Assignment, EventTypes, type TaskFailed, ValidationError } from "@taskjet/schemas";
import { describe, expect, it } from "vitest";
import type { Connection } from "../connection.js";
import { reportResult } from "./reports.js";

const ns = "ns1";
const runId = "R1";
const assignment = { runId, taskRunId: `${runId}-0`, attempt: 0, expectedSeq: 7 } as Assignment;
const started = { workerName: "w", assignedAt: new Date().toISOString(), at: new Date().toISOString() };

/** A run at sequence 7 whose stream refuses what `refuse` says, with that error, every time it is sent. */
function refusingStream(refuse: (event: { type: string; data: Record<string, unknown> }) => Error | undefined) {
  const stored: TaskFailed[] = [];
  const sent: string[] = [];
  const conn = {
    scoped: false,
    publisher: {
      publish: async (_subject: string, data: string, o: { expect: { lastSubjectSequence: number } }) => {
        const event = JSON.parse(data);
        sent.push(event.type);
        const err = refuse(event);
        if (err) throw err;
        expect(o.expect.lastSubjectSequence).toBe(7);
        stored.push(event);
        return { seq: 8, duplicate: false };
      },
    },
  } as unknown as Connection;
  return { reporter: { conn, ns, workerId: "w1", workerName: "w" }, stored, sent };
}

describe("reports - an outcome the stream refuses for good", () => {
  const refusals: [string, Error][] = [
    ["over max_payload", InvalidArgumentError.format("payload", "max_payload size exceeded")],
    [
      "over the stream's message size",
      new JetStreamApiError({ code: 400, err_code: 10054, description: "message size exceeds maximum allowed" }),
    ],
    [
      "invalid",
      new ValidationError([{ path: "TaskCompleted", message: "invalid event: data.output: expected object" }]),
    ],
  ];
  for (const [what, error] of refusals) {
    it(`reports - an outcome refused as ${what} is recorded as a small TaskFailed saying so`, async () => {
      let first = true;
      const { reporter, stored, sent } = refusingStream(() => {
        const err = first ? error : undefined;
        first = false;
        return err;
      });
      const applied = await reportResult(reporter, assignment, 7, { ok: true, output: { x: 1 } }, 1 << 20, started);
      expect(applied).toBe(true);
      expect(sent).toEqual([EventTypes.TaskCompleted, EventTypes.TaskFailed]);
      const failed = stored[0] as TaskFailed;
      expect(failed.data).toMatchObject({ attempt: 0, workerId: "w1", started: { workerName: "w" } });
      expect(failed.data.nonRetryable).toBeUndefined();
      expect(failed.data.error.name).toBe("OutcomeRefusedError");
      expect(failed.data.error.message).toMatch(/^the attempt's TaskCompleted could not be recorded \(/);
    });
  }

  it("reports - a refused TaskFailed names the task's own error in the one recorded instead", async () => {
    const { reporter, stored } = refusingStream((e) =>
      e.data.error && (e.data.error as { name: string }).name !== "OutcomeRefusedError"
        ? InvalidArgumentError.format("payload", "max_payload size exceeded")
        : undefined,
    );
    const applied = await reportResult(reporter, assignment, 7, { ok: false, error: new TypeError("boom") }, 1 << 20);
    expect(applied).toBe(true);
    expect(stored[0]?.data.error.message).toMatch(
      /could not be recorded .*max_payload.*; the task failed with TypeError: boom$/,
    );
  });

  it("reports - a transient failure is not taken for a refusal: the report throws, nothing else is sent", async () => {
    const { reporter, sent } = refusingStream(() => new Error("connection closed"));
    await expect(reportResult(reporter, assignment, 7, { ok: true, output: {} }, 1 << 20)).rejects.toThrow(
      "connection closed",
    );
    expect(sent).toEqual([EventTypes.TaskCompleted]);
  });

  it("reports - a task's error with unreadable fields is recorded within the payload limit", async () => {
    const { reporter, stored } = refusingStream(() => undefined);
    const error = new Proxy(new Error("x"), {
      get() {
        throw 1;
      },
    });
    expect(await reportResult(reporter, assignment, 7, { ok: false, error }, 1 << 20)).toBe(true);
    expect(stored[0]?.data.error).toEqual({
      name: "[unreadable name: 1]",
      message: "[unreadable message: 1]",
      stack: "[unreadable stack: 1]",
    });
    const { reporter: r2, stored: s2 } = refusingStream(() => undefined);
    await reportResult(r2, assignment, 7, { ok: false, error: new Error("m".repeat(3_000_000)) }, 64 * 1024);
    expect(JSON.stringify(s2[0]).length).toBeLessThan(64 * 1024);
  });
});
