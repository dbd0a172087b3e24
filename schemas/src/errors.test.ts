import { describe, expect, it } from "vitest";
import { isNonRetryable, isRateLimited, RECORDED_TEXT_MAX, toRecordedError, truncateText } from "./errors.js";
import { RecordedErrorSchema } from "./events.js";

const throwingProxy = (target: object = {}) =>
  new Proxy(target, {
    get() {
      throw 1;
    },
  });

describe("errors", () => {
  it("toRecordedError - an error's fields that are not strings are recorded as their JSON", () => {
    const stack = Object.assign(new Error("ws"), { stack: { a: 1 } });
    expect(toRecordedError(stack)).toEqual({ name: "Error", message: "ws", stack: '{"a":1}' });
    const named = Object.assign(new Error("n"), { name: { x: 1 } });
    expect(toRecordedError(named)).toMatchObject({ name: '{"x":1}', message: "n" });
    const bigint = Object.assign(new Error("b"), { stack: 5n });
    expect(toRecordedError(bigint)).toMatchObject({ stack: "5" });
    const noName = Object.assign(new Error("e"), { name: "" });
    expect(toRecordedError(noName).name).toBe("Error");
  });

  it("toRecordedError - message and stack are cut to maxChars, marked, never between a surrogate pair", () => {
    const huge = toRecordedError(new Error("m".repeat(3_000_000)));
    expect(huge.message.startsWith("m".repeat(RECORDED_TEXT_MAX))).toBe(true);
    expect(huge.message).toMatch(/… \[truncated: 3000000 characters in all\]$/);
    expect(huge.stack?.length).toBeLessThan(RECORDED_TEXT_MAX + 100);
    expect(toRecordedError("s".repeat(500), 100).message).toMatch(/^s{100}… \[truncated: 500 characters in all\]$/);
    expect(toRecordedError(Object.assign(new Error("x"), { name: "N".repeat(1000) })).name.length).toBeLessThan(300);
    expect(truncateText(`a${"😀".repeat(10)}`, 4)).toBe("a😀… [truncated: 21 characters in all]");
    expect(truncateText("short", 10)).toBe("short");
  });

  it("toRecordedError - values that cannot be read or printed are described, never thrown", () => {
    const proxy = toRecordedError(throwingProxy());
    expect(proxy.name).toBe("Error");
    expect(proxy.message).toMatch(/^\[unprintable object: 1\]$/);
    const errorProxy = toRecordedError(
      new Proxy(new Error("hidden"), {
        get() {
          throw new Error("no reading me");
        },
      }),
    );
    expect(errorProxy).toEqual({
      name: "[unreadable name: Error: no reading me]",
      message: "[unreadable message: Error: no reading me]",
      stack: "[unreadable stack: Error: no reading me]",
    });
    const protoTrap = new Proxy(
      {},
      {
        getPrototypeOf() {
          throw throwingProxy();
        },
      },
    );
    expect(toRecordedError(protoTrap)).toEqual({ name: "Error", message: "[unreadable thrown value: unknown reason]" });
    const printsBadly = { toJSON: () => 1n, toString: () => "fine" };
    expect(toRecordedError(printsBadly).message).toBe("fine");
    expect(toRecordedError(undefined).message).toBe("undefined");
    expect(toRecordedError(Symbol("s")).message).toBe("Symbol(s)");
  });

  it("toRecordedError - whatever was thrown, the result is a valid recorded error", () => {
    const thrown: unknown[] = [
      null,
      42,
      { code: 1 },
      [1, 2],
      () => 1,
      throwingProxy(),
      throwingProxy(new Error("x")),
      Object.assign(new Error("e"), { message: { m: 1 }, name: 7, stack: null }),
      Object.assign(new Error("e"), { stack: undefined }),
    ];
    for (const err of thrown) expect(RecordedErrorSchema.safeParse(toRecordedError(err)).success).toBe(true);
  });

  it("isNonRetryable, isRateLimited - a Proxy whose traps throw is neither", () => {
    expect(isNonRetryable(throwingProxy(new Error("x")))).toBe(false);
    expect(isRateLimited(throwingProxy(new Error("x")))).toBe(false);
  });
});
