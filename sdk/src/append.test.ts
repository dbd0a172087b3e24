import { JetStreamApiError, jserrors } from "@nats-io/jetstream/internal";
import { TimeoutError } from "@nats-io/transport-node";
import { describe, expect, it } from "vitest";
import { isTransient } from "./append.js";

const apiError = (code: number, description: string) =>
  new JetStreamApiError({ code: 503, err_code: code, description });

describe("isTransient", () => {
  it("a failover's errors are worth trying again: no responders, a timeout, a leader being elected", () => {
    expect(isTransient(new jserrors.JetStreamNotEnabled("no responders"))).toBe(true);
    expect(isTransient(new TimeoutError())).toBe(true);
    expect(isTransient(apiError(10008, "JetStream system temporarily unavailable"))).toBe(true);
  });

  it("answers that stay the same are not: a CAS conflict, a missing stream, any other error", () => {
    expect(isTransient(apiError(10071, "wrong last sequence: 3"))).toBe(false);
    expect(isTransient(apiError(10059, "stream not found"))).toBe(false);
    expect(isTransient(new Error("JetStream system temporarily unavailable"))).toBe(false);
  });
});
