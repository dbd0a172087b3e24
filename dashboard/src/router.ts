import { useEffect, useState } from "preact/hooks";

/** The page a hash names: `#/runs?status=FAILED` → `{ path: "/runs", query }`. */
export interface Route {
  path: string;
  query: URLSearchParams;
}

export function currentRoute(): Route {
  const hash = location.hash.replace(/^#/, "") || "/runs";
  const q = hash.indexOf("?");
  return {
    path: q < 0 ? hash : hash.slice(0, q),
    query: new URLSearchParams(q < 0 ? "" : hash.slice(q + 1)),
  };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(currentRoute);
  useEffect(() => {
    const on = () => setRoute(currentRoute());
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return route;
}

/** Goes to `path` with `query` (empty values left out). */
export function navigate(path: string, query: Record<string, string | undefined> = {}): void {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v) q.set(k, v);
  const s = q.toString();
  location.hash = `#${path}${s ? `?${s}` : ""}`;
}

export function runHref(runId: string): string {
  return `#/runs/${encodeURIComponent(runId)}`;
}
