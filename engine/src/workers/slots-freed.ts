import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { type SlotsFreed, SlotsFreedSchema, subjects } from "@taskjet/schemas";
import type { Logger } from "pino";

const decoder = new TextDecoder();

/**
 * Listens for the slots workers announce they freed (`SlotsFreed`, core NATS) while this engine leads the namespace.
 * A hint, not a fact: a lost one changes nothing but how soon the slot is used again (the outcome's fold frees it),
 * or, for attempts given back, how soon they run elsewhere (the assignment is sent to that worker again).
 */
export function listenForFreedSlots(
  nc: NatsConnection,
  ns: string,
  log: Logger,
  onFreed: (workerId: string, attempts: SlotsFreed["attempts"], returned: SlotsFreed["returned"]) => void,
): Subscription {
  const prefix = subjects.slotsFreed(ns, "");
  return nc.subscribe(subjects.slotsFreedAll(ns), {
    callback: (_err, m) => {
      let message: SlotsFreed;
      try {
        message = SlotsFreedSchema.parse(JSON.parse(decoder.decode(m.data)));
      } catch (err) {
        log.warn({ err, subject: m.subject }, "malformed freed-slots message ignored");
        return;
      }
      onFreed(m.subject.slice(prefix.length), message.attempts, message.returned);
    },
  });
}
