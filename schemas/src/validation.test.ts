import { describe, expect, it } from "vitest";
import { z } from "zod";
import { decodeEvent, makeEvent } from "./codec.js";
import { PayloadTooLargeError, ValidationError } from "./errors.js";
import { EventTypes } from "./events.js";
import { checkTaskName, checkToken, describeValue, encodeJsonObject, parseWith } from "./validation.js";

function error(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("did not throw");
}

describe("validation", () => {
  it("validation - task names: empty, too long and bad characters are refused, naming the value", () => {
    expect(checkTaskName("email.send_v2-x")).toBe("email.send_v2-x");
    for (const bad of ["", "a b", ".a", "a.", "a..b", "x".repeat(129), 5, undefined]) {
      const err = error(() => checkTaskName(bad));
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).field).toBe("name");
      expect((err as ValidationError).code).toBe("INVALID_ARGUMENT");
    }
    expect((error(() => checkTaskName("a b")) as Error).message).toContain('"a b"');
  });

  it("validation - tokens allow letters, digits, _ and - only", () => {
    expect(checkToken("ns_1-a", "namespace")).toBe("ns_1-a");
    expect((error(() => checkToken("a.b", "namespace")) as Error).message).toMatch(/^namespace: .*"a\.b"/);
  });

  it("validation - inputs must be plain JSON objects; the path of the offending part is named", () => {
    expect(encodeJsonObject({ a: [1, "x", null, { b: true }] }, "input", 1000)).toBe('{"a":[1,"x",null,{"b":true}]}');
    // A property set to undefined is left out, as JSON.stringify leaves it out; in an array it is refused (below).
    expect(encodeJsonObject({ a: 1, b: undefined, c: { d: undefined } }, "input", 1000)).toBe('{"a":1,"c":{}}');
    const cases: [unknown, string][] = [
      [[1, 2], "input"],
      ["text", "input"],
      [null, "input"],
      [{ a: () => 1 }, "input.a"],
      [{ a: 1n }, "input.a"],
      [{ a: Number.NaN }, "input.a"],
      [{ a: [undefined] }, "input.a[0]"],
      [{ when: new Date() }, "input.when"],
      [{ m: new Map() }, "input.m"],
    ];
    for (const [value, path] of cases) {
      const err = error(() => encodeJsonObject(value, "input", 1000));
      expect(err, path).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).field).toBe(path);
    }
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect((error(() => encodeJsonObject(cyclic, "input", 1000)) as Error).message).toContain("circular");
  });

  it("validation - a payload over the limit is a PayloadTooLargeError with size and limit", () => {
    const err = error(() => encodeJsonObject({ s: "é".repeat(600) }, "input", 1000));
    expect(err).toBeInstanceOf(PayloadTooLargeError);
    expect((err as PayloadTooLargeError).size).toBe(1208);
    expect((err as PayloadTooLargeError).limit).toBe(1000);
    expect((err as PayloadTooLargeError).code).toBe("PAYLOAD_TOO_LARGE");
  });

  it("validation - zod failures name each field and the value found", () => {
    const schema = z.object({ priority: z.number().int().max(3), meta: z.record(z.string(), z.string()) });
    const err = error(() => parseWith(schema, { priority: 7, meta: { a: 1 } }, "options")) as ValidationError;
    expect(err.issues.map((i) => i.path)).toEqual(["options.priority", "options.meta.a"]);
    expect(err.message).toContain("got 7");
  });

  it("validation - values are described as they are, never as JSON would mangle them or by throwing", () => {
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    expect(
      [NaN, -Infinity, 10n, new Date("nope"), new Date(0), undefined, circular, "x".repeat(100)].map(describeValue),
    ).toEqual([
      "NaN",
      "-Infinity",
      "10n",
      "an invalid Date",
      "1970-01-01T00:00:00.000Z",
      "undefined",
      "[object Object]",
      `"${"x".repeat(77)}..."`,
    ]);
    // A secret's value is never repeated, only its length.
    const auth = z.object({ password: z.string().min(8), key: z.string().min(8) });
    expect((error(() => parseWith(auth, { password: "hunter2", key: "k" }, "auth")) as Error).message).toBe(
      "auth.password: Too small: expected string to have >=8 characters, got 7 characters; " +
        "auth.key: Too small: expected string to have >=8 characters, got 1 characters",
    );
    expect(error(() => parseWith(z.object({ retries: z.number().int() }), { retries: NaN }))).toMatchObject({
      message: expect.stringContaining("got NaN"),
    });
  });
});

describe("codec", () => {
  it("codec - decodeEvent refuses non-JSON, unknown shapes and events naming another run", () => {
    const enc = (v: unknown) => new TextEncoder().encode(typeof v === "string" ? v : JSON.stringify(v));
    expect(decodeEvent(enc("{nope"), "r1")).toMatchObject({ ok: false, reason: expect.stringContaining("not JSON") });
    expect(decodeEvent(enc({ v: 1, type: "Whatever", runId: "r1" }), "r1").ok).toBe(false);
    const created = makeEvent(EventTypes.RunCreated, {
      runId: "r1",
      data: { workflowName: "t", input: {}, tasks: [{ taskRunId: "r1-0", taskName: "t" }], trigger: { kind: "run" } },
    });
    expect(decodeEvent(enc(created), "r1").ok).toBe(true);
    expect(decodeEvent(enc(created), "r2")).toMatchObject({
      ok: false,
      reason: expect.stringContaining("names run r1"),
    });
  });
});
