/**
 * A run's history is meant to stay below this many events: reading and folding a whole history is linear in its
 * length (measured in `test/bench/history.ts`: README, "History limits"), every reader of a run pays it, and a durable
 * task's checkpoints all sit in its state. Not enforced: the engine logs a warning once when a run reaches it, and
 * `taskjet runs history` says so on stderr.
 */
export const HISTORY_WARN_EVENTS = 10_000;
