import type { KV } from "@nats-io/kv";

/** The names under a namespace in a KV bucket (`<ns>.<name>` keys matching `filter`), sorted. */
export async function kvNames(kv: KV, ns: string, filter: string): Promise<string[]> {
  const names: string[] = [];
  for await (const key of await kv.keys(filter)) names.push(key.slice(ns.length + 1));
  return names.sort();
}
