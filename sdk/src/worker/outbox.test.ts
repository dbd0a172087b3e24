import { type TaskLogLine, TaskLogLineSchema } from "@taskjet/schemas";
import { describe, expect, it } from "vitest";
import { encodeLogLine } from "./outbox.js";

const line = (fields?: Record<string, unknown>): TaskLogLine => ({
  v: 1,
  at: new Date().toISOString(),
  level: "info",
  message: "m",
  ...(fields ? { fields } : {}),
  taskRunId: "R1-0",
  attempt: 0,
  workerId: "w1",
});

const stored = (fields: Record<string, unknown>, maxBytes = 1 << 20) => {
  const parsed = TaskLogLineSchema.parse(JSON.parse(encodeLogLine(line(fields), maxBytes)));
  return parsed.fields;
};

describe("outbox", () => {
  it("encodeLogLine - plain fields are stored as they are, a line without fields has none", () => {
    expect(stored({ n: 1, s: "x", nested: { a: [1, 2] } })).toEqual({ n: 1, s: "x", nested: { a: [1, 2] } });
    const bare = line(); // one line: two would differ in `at` when the millisecond turns between them
    expect(JSON.parse(encodeLogLine(bare, 1 << 20))).toEqual(bare);
  });

  it("encodeLogLine - circular references and BigInts are stored readably, never thrown", () => {
    const c: Record<string, unknown> = { name: "loop" };
    c.self = c;
    const shared = { n: 1 };
    expect(stored({ c, b: 1n, nested: { big: 2n ** 70n }, s1: shared, s2: shared, list: [shared, shared] })).toEqual({
      c: { name: "loop", self: "[Circular]" },
      b: "1",
      nested: { big: "1180591620717411303424" },
      s1: { n: 1 },
      s2: { n: 1 },
      list: [{ n: 1 }, { n: 1 }],
    });
  });

  it("encodeLogLine - a field that cannot be read or turned into JSON spoils only itself", () => {
    const proxy = new Proxy(
      {},
      {
        get() {
          throw new Error("no reading me");
        },
      },
    );
    const getter = {
      ok: 1,
      get bad(): unknown {
        throw new Error("getter threw");
      },
    };
    expect(stored({ p: proxy, good: 2, bad: { toJSON: () => 3n ** 2n, x: 1 } })).toEqual({
      p: "[unserializable: no reading me]",
      good: 2,
      bad: "9",
    });
    expect(stored(getter)).toEqual({ ok: 1, bad: "[unserializable: getter threw]" });
    const keyless = new Proxy(
      {},
      {
        ownKeys() {
          throw new Error("no keys");
        },
      },
    );
    expect(stored(keyless)).toEqual({ "[fields]": "[unserializable: no keys]" });
  });

  it("encodeLogLine - fields too large for a message are replaced by a marked preview within the limit", () => {
    const maxBytes = 100_000;
    const json = encodeLogLine(line({ blob: "é".repeat(3_000_000) }), maxBytes);
    expect(Buffer.byteLength(json)).toBeLessThanOrEqual(maxBytes);
    const fields = TaskLogLineSchema.parse(JSON.parse(json)).fields as Record<string, string>;
    expect(fields["[truncated]"]).toMatch(/^\{"blob":"éé/);
    expect(fields["[truncated]"]).toMatch(/… \[truncated: fields were \d+ bytes as JSON, over the limit of 100000\]$/);
    // Control characters take 6 bytes each as JSON: still within the limit.
    expect(Buffer.byteLength(encodeLogLine(line({ c: "\u0001".repeat(500_000) }), maxBytes))).toBeLessThanOrEqual(
      maxBytes,
    );
  });
});
