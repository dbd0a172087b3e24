import { describe, expect, it } from "vitest";
import { instant } from "./pages/runs.tsx";

describe("runs filter", () => {
  it("since/until - an ISO time or a duration ago, as the API takes them; anything else is no bound", () => {
    const now = Date.parse("2026-11-30T12:00:00.000Z");
    expect(instant("1h", now)).toBe("2026-11-30T11:00:00.000Z");
    expect(instant("7d", now)).toBe("2026-11-23T12:00:00.000Z");
    expect(instant("90s", now)).toBe("2026-11-30T11:58:30.000Z");
    expect(instant("2026-11-01T00:00:00Z", now)).toBe("2026-11-01T00:00:00.000Z");
    expect(instant("soon", now)).toBeUndefined();
  });
});
