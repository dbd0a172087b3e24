import { describe, expect, it } from "vitest";
import { compileEventFilter, compileKeyExpression, evaluateKey } from "./flow.js";
import { compileWebhookKey } from "./webhooks.js";

describe("CEL expressions over JSON", () => {
  it("a key named constructor is only a key: at any depth, in arrays, and as what the expression reads", () => {
    const key = compileKeyExpression("input.userId", "concurrency.expression");
    expect(evaluateKey(key, { userId: "u1", constructor: "x" }, {})).toBe("u1");
    const nested = compileKeyExpression("input.items[0].sku + '/' + input.meta.constructor", "expression");
    expect(evaluateKey(nested, { items: [{ sku: "a", constructor: 1 }], meta: { constructor: "c" } }, {})).toBe("a/c");
    const filter = compileEventFilter("payload.plan == 'pro'", "filter");
    expect(filter({ payload: { plan: "pro", constructor: "Bob" }, additional_metadata: {} })).toBe(true);
    expect(filter({ payload: { plan: "free", constructor: "Bob" }, additional_metadata: {} })).toBe(false);
    const hook = compileWebhookKey("body.type", "eventKeyExpression");
    expect(hook({ body: { type: "order:paid", constructor: "Bob" }, headers: {} })).toBe("order:paid");
  });

  it("what JS objects inherit is not there: a missing key is still missing", () => {
    expect(compileEventFilter("has(payload.constructor)", "filter")({ payload: {}, additional_metadata: {} })).toBe(
      false,
    );
    expect(() => compileKeyExpression("input.toString", "expression")({ input: {}, additional_metadata: {} })).toThrow(
      /No such key/,
    );
  });
});
