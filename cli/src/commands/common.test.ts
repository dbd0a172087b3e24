import { describe, expect, it } from "vitest";
import { waitForStopSignal } from "./common.js";

describe("waitForStopSignal", () => {
  it("one Ctrl-C delivered twice at once (the terminal's group, and npm forwarding it) stops once; a later one is a second", async () => {
    const again: string[] = [];
    const stop = waitForStopSignal((s) => again.push(s));
    try {
      process.emit("SIGINT", "SIGINT");
      process.emit("SIGINT", "SIGINT");
      expect(await stop.signal).toBe("SIGINT");
      expect(again).toEqual([]);
      await new Promise((r) => setTimeout(r, 400));
      process.emit("SIGTERM", "SIGTERM");
      expect(again).toEqual(["SIGTERM"]);
    } finally {
      stop.dispose();
    }
  });
});
