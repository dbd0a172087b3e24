import { describe, expect, it } from "vitest";
import { Fence } from "./fence.js";

function fence(windowMs = 4000) {
  let now = 10_000;
  let kicks = 0;
  const f = new Fence(
    windowMs,
    () => kicks++,
    () => now,
  );
  return { f, advance: (ms: number) => (now += ms), now: () => now, kicks: () => kicks };
}

describe("lease fence", () => {
  it("fence - open within the window after a renewal was sent, closed after it and before the first", () => {
    const { f, advance, now } = fence();
    expect(f.ok).toBe(false);
    f.confirm(now());
    advance(3999);
    expect(f.ok).toBe(true);
    advance(1);
    expect(f.ok).toBe(false);
    // Counted from when the renewal was sent, not from when its answer came.
    f.confirm(now() - 3990);
    expect(f.ok).toBe(true);
    advance(10);
    expect(f.ok).toBe(false);
  });

  it("fence - what waits runs once, when a renewal confirms the lease; a renewal sent too long ago does not", () => {
    const { f, advance, now, kicks } = fence();
    f.confirm(now());
    advance(20_000); // frozen
    const ran: string[] = [];
    const a = () => ran.push("a");
    f.whenOk(a);
    f.whenOk(a);
    f.whenOk(() => ran.push("b"));
    expect(kicks()).toBe(1); // renews at once, not at its next period
    f.confirm(now() - 5000);
    expect(ran).toEqual([]);
    f.confirm(now());
    expect(ran).toEqual(["a", "b"]);
    f.confirm(now());
    expect(ran).toEqual(["a", "b"]);
  });

  it("fence - a dropped connection closes it; a dropped lease never runs what waits", () => {
    const { f, now } = fence();
    f.confirm(now());
    f.lapse();
    expect(f.ok).toBe(false);
    let ran = 0;
    f.whenOk(() => ran++);
    f.drop();
    f.whenOk(() => ran++);
    f.confirm(now());
    expect(ran).toBe(0);
  });
});
