import { AppendConflictError } from "@taskjet/schemas";
import type { Logger } from "pino";
import type { Timers } from "./timers.js";

/** How soon an append that failed (not by a conflict) is tried again after `tries` tries: 0.5 s doubling to 10 s. */
export function failedAppendDelayMs(tries: number): number {
  return Math.min(10_000, 500 * 2 ** tries);
}

/**
 * What a timer does when the append it fired fails. A CAS conflict means the run moved: folding that event arms the
 * timer again if it is still needed. Any other failure (NATS unavailable, a timeout) leaves the state as it was, so no
 * fold would arm it again and the run would wait for an engine restart: it fires again under `key`, unless a timer
 * for the key was set meanwhile. `again` receives the number of tries so far.
 */
export function retryUnlessConflict(
  o: { timers: Timers; log: Logger },
  key: string,
  tries: number,
  again: (tries: number) => void,
  what: string,
): (err: unknown) => void {
  return (err) => {
    if (err instanceof AppendConflictError) return;
    // Once per timer at warn: an outage fails every timer due during it, each several times.
    (tries === 0 ? o.log.warn : o.log.debug).call(o.log, { err, key, tries }, `${what}: trying again`);
    if (o.timers.has(key)) return;
    o.timers.set(key, o.timers.now() + failedAppendDelayMs(tries), again, tries + 1);
  };
}
