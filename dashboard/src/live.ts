import { createContext } from "preact";
import { useContext, useEffect, useRef, useState } from "preact/hooks";
import type { Api, FeedEvent } from "./api.ts";

/** What the live feed delivers: a batch of history events, or "reset" (reconnected or too many: reload). */
export type FeedBatch = FeedEvent[] | "reset";

/** Fans the session's one event stream out to the mounted pages. */
export class FeedBus {
  private readonly listeners = new Set<(batch: FeedBatch) => void>();
  subscribe(listener: (batch: FeedBatch) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  emit(batch: FeedBatch): void {
    for (const l of this.listeners) l(batch);
  }
}

export interface AppContext {
  api: Api;
  feed: FeedBus;
  /** Shows a message in the corner for a few seconds. */
  toast: (message: string, kind?: "ok" | "error") => void;
}

export const Ctx = createContext<AppContext | undefined>(undefined);

export function useApp(): AppContext {
  const ctx = useContext(Ctx);
  if (!ctx) throw new Error("useApp outside the signed-in app");
  return ctx;
}

/** Calls `handler` for every batch of the live feed while mounted (the latest handler: no resubscribing). */
export function useFeed(handler: (batch: FeedBatch) => void): void {
  const { feed } = useApp();
  const latest = useRef(handler);
  latest.current = handler;
  useEffect(() => feed.subscribe((b) => latest.current(b)), [feed]);
}

/**
 * Loads data with `load`, then again (coalesced: at most one load in flight, the next one `delayMs` after a change)
 * whenever the feed brings an event `affects` says matters, or a reset. `deps` reload at once.
 */
export function useLive<T>(
  load: () => Promise<T>,
  affects: (e: FeedEvent) => boolean,
  deps: unknown[],
  delayMs = 300,
): { data: T | undefined; error: Error | undefined; loading: boolean; reload: () => void } {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<Error>();
  const [loading, setLoading] = useState(true);
  const gen = useRef(0);
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const inFlight = useRef(false);
  const again = useRef(false);
  const loadRef = useRef(load);
  loadRef.current = load;

  const run = async (g: number) => {
    if (inFlight.current) {
      again.current = true;
      return;
    }
    inFlight.current = true;
    try {
      const value = await loadRef.current();
      if (g === gen.current) {
        setData(value);
        setError(undefined);
      }
    } catch (err) {
      if (g === gen.current) setError(err as Error);
    } finally {
      inFlight.current = false;
      if (g === gen.current) setLoading(false);
      if (again.current) {
        again.current = false;
        schedule();
      }
    }
  };
  const schedule = () => {
    if (timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = undefined;
      void run(gen.current);
    }, delayMs);
  };
  useEffect(() => {
    gen.current++;
    setLoading(true);
    inFlight.current = false;
    void run(gen.current);
    return () => {
      if (timer.current) clearTimeout(timer.current);
      timer.current = undefined;
    };
  }, deps);
  useFeed((batch) => {
    if (batch === "reset" || batch.some(affects)) schedule();
  });
  return { data, error, loading, reload: () => void run(gen.current) };
}

/** The current time, ticking every `ms` (ages and running durations move on screen). */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

/** Calls `fn` every `ms` while mounted and the tab is visible. */
export function useInterval(fn: () => void, ms: number): void {
  const latest = useRef(fn);
  latest.current = fn;
  useEffect(() => {
    const t = setInterval(() => {
      if (document.visibilityState === "visible") latest.current();
    }, ms);
    return () => clearInterval(t);
  }, [ms]);
}
