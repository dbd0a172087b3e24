import { silentLogger, ValidationError } from "@taskjet/schemas";
import { describe, expect, it } from "vitest";
import { resolveClientConfig } from "./config.js";

describe("client config", () => {
  it("logger - without one, warnings go to stderr (pino at warn, or TASKJET_LOG_LEVEL); silent on request; a bad level is named", () => {
    expect((resolveClientConfig({}, {}).logger as unknown as { level: string }).level).toBe("warn");
    expect((resolveClientConfig({}, { TASKJET_LOG_LEVEL: "debug" }).logger as unknown as { level: string }).level).toBe(
      "debug",
    );
    expect(resolveClientConfig({}, { TASKJET_LOG_LEVEL: "silent" }).logger).toBe(silentLogger);
    expect(resolveClientConfig({ logger: silentLogger }, {}).logger).toBe(silentLogger);
    const err = (() => {
      try {
        resolveClientConfig({}, { TASKJET_LOG_LEVEL: "loud" });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as Error).message).toMatch(/TASKJET_LOG_LEVEL.*"loud"/);
  });
});
