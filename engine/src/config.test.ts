import { ValidationError } from "@taskjet/schemas";
import { describe, expect, it } from "vitest";
import { resolveEngineConfig } from "./config.js";

function refusal(options: Parameters<typeof resolveEngineConfig>[0], env: NodeJS.ProcessEnv): ValidationError {
  try {
    resolveEngineConfig(options, env);
  } catch (err) {
    if (err instanceof ValidationError) return err;
    throw err;
  }
  throw new Error("accepted");
}

describe("engine config", () => {
  it("config - a bad value from the environment is named after its variable, with what was set; an option after itself", () => {
    expect(refusal({}, { TASKJET_REPLICAS: "abc" }).message).toMatch(/^TASKJET_REPLICAS: .*, got "abc"$/);
    expect(refusal({}, { TASKJET_REPLICAS: "9" }).message).toMatch(/^TASKJET_REPLICAS: .*, got 9$/);
    expect(refusal({}, { TASKJET_HTTP: "nope" }).message).toMatch(/^TASKJET_HTTP: must be host:port/);
    expect(refusal({}, { TASKJET_LOG_LEVEL: "loud" }).message).toMatch(/^TASKJET_LOG_LEVEL: .*, got "loud"$/);
    expect(refusal({}, { TASKJET_NAMESPACE: "a b" }).field).toBe("TASKJET_NAMESPACE");
    // Given as an option, the option is named, whatever the environment holds.
    expect(refusal({ replicas: 9 }, { TASKJET_REPLICAS: "1" }).field).toBe("replicas");
    expect(refusal({ http: "nope" }, {}).field).toBe("http");
    expect(resolveEngineConfig({}, { TASKJET_REPLICAS: "3" }).replicas).toBe(3);
  });
});
