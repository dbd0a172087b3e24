import { AppendConflictError } from "@taskjet/schemas";
import type { Logger } from "pino";
import type { Timers } from "./timers.js";

/** How soon a timer whose append failed fires again: doubling from the first to the last delay. */
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 10_000;

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
    o.timers.set(key, o.timers.now() + Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** tries), again, tries + 1);
  };
}
