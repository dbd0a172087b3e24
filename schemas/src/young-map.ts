/**
 * A copy of a busy map while it is small (else the map itself): called every so often, it keeps the map young.
 *
 * Why: a map that has outlived two scavenges is in V8's old generation, and the hash tables it replaces as entries
 * come and go stay there, garbage until the next full GC, still pointing at the entries they held; the scavenger takes
 * those for live and promotes them. A map of in-flight runs or of pending acks, thousands of entries in and out a
 * second, so had nearly every run's objects promoted. Measured in the engine at 500 tasks/s (`throughput.ts` with
 * `--trace-gc-nvp`): 810 KB promoted per scavenge, 5.8 ms each; with its run states and pending acks copied so, 207 KB
 * and 2.3 ms.
 */
export function youngCopy<K, V>(map: Map<K, V>, limit = 4096): Map<K, V> {
  return map.size < limit ? new Map(map) : map;
}
