import type {
  CronDefinition,
  Queues,
  RunState,
  RunStatus,
  RunSummary,
  TaskLogLine,
  WorkerRegistration,
} from "@taskjet/schemas";
import { parseSse } from "./sse.ts";

/** The engine's REST API as the dashboard uses it: every call carries the session's bearer token. */

const TOKEN_KEY = "taskjet.token";
const NS_KEY = "taskjet.namespace";

/** Who the dashboard is signed in as: the token (kept in sessionStorage: gone with the tab) and its namespace. */
export interface Session {
  token: string;
  namespace: string;
  tokenName: string;
}

export function loadSession(): Session | undefined {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const namespace = sessionStorage.getItem(NS_KEY);
  return token && namespace
    ? { token, namespace, tokenName: sessionStorage.getItem(`${NS_KEY}.name`) ?? "" }
    : undefined;
}

export function saveSession(s: Session | undefined): void {
  if (!s) {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(NS_KEY);
    sessionStorage.removeItem(`${NS_KEY}.name`);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, s.token);
  sessionStorage.setItem(NS_KEY, s.namespace);
  sessionStorage.setItem(`${NS_KEY}.name`, s.tokenName);
}

/** An error the API answered (`{ error: { code, message } }`), or a network failure (status 0). */
export class ApiError extends Error {
  override readonly name = "ApiError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

/** Called when the engine refuses the token (401): the app signs out. */
let onUnauthorized: () => void = () => {};
export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

/** `signingIn`: a refused token is the sign-in form's answer, not a session that expired. */
async function call<T>(
  token: string,
  path: string,
  init: { method?: string; body?: unknown; signingIn?: boolean } = {},
): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, {
      method: init.method ?? "GET",
      headers: {
        authorization: `Bearer ${token}`,
        ...(init.body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: init.body === undefined ? null : JSON.stringify(init.body),
    });
  } catch (err) {
    throw new ApiError(0, "NETWORK", `engine unreachable: ${(err as Error).message}`);
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!res.ok) {
    const e = (json as { error?: { code?: string; message?: string; details?: unknown; issues?: unknown } })?.error;
    if (res.status === 401 && !init.signingIn) onUnauthorized();
    throw new ApiError(
      res.status,
      e?.code ?? `HTTP_${res.status}`,
      e?.message ?? (text.slice(0, 300) || res.statusText),
      e?.details ?? e?.issues,
    );
  }
  return json as T;
}

/** The first array in a response: `[...]`, or `{ runs: [...] }`, `{ items: [...] }` and the like. */
function listOf<T>(body: unknown, ...keys: string[]): T[] {
  if (Array.isArray(body)) return body as T[];
  if (body && typeof body === "object") {
    const o = body as Record<string, unknown>;
    for (const k of [...keys, "items", "data"]) if (Array.isArray(o[k])) return o[k] as T[];
    for (const v of Object.values(o)) if (Array.isArray(v)) return v as T[];
  }
  return [];
}

/** Filters of the runs list, as the page's URL holds them. */
export interface RunQuery {
  statuses?: RunStatus[];
  task?: string;
  /** ISO times: created at or after, before. */
  since?: string;
  until?: string;
  /** `key=value` pairs the run's metadata must all have. */
  metadata?: Record<string, string>;
  cursor?: string;
  limit?: number;
}

export interface RunPage {
  runs: RunSummary[];
  nextCursor?: string;
  /** Runs per status matching the other filters, when the API counts them. */
  counts?: Partial<Record<RunStatus, number>>;
  /** Whether counts are exact or capped. */
  countsCapped?: boolean;
}

/** One message of a run's history, as the API returns it. */
export interface HistoryItem {
  seq: number;
  /** When the stream stored it (ISO). */
  time: string;
  event?: { type: string; at: string; taskRunId?: string; data: Record<string, unknown>; [k: string]: unknown };
  rejected?: string;
}

export interface StreamChunkItem {
  seq: number;
  taskRunId: string;
  attempt: number;
  index: number;
  at: string;
  text: string;
}

export interface TriggerRequest {
  task: string;
  input: Record<string, unknown>;
  additionalMetadata?: Record<string, string>;
  priority?: number;
}

/** The calls of one session. */
export class Api {
  readonly ns: string;
  private readonly base: string;

  constructor(readonly session: Session) {
    this.ns = session.namespace;
    this.base = `/api/v1/namespaces/${encodeURIComponent(session.namespace)}`;
  }

  /** Checks a token and learns its namespace (a dashboard route: any namespace's token is accepted). */
  static async signIn(token: string): Promise<Session> {
    const who = await call<{ namespace: string; tokenName: string }>(token, "/api/v1/dashboard/session", {
      signingIn: true,
    });
    return { token, namespace: who.namespace, tokenName: who.tokenName };
  }

  private get<T>(path: string): Promise<T> {
    return call<T>(this.session.token, `${this.base}${path}`);
  }

  async runs(q: RunQuery): Promise<RunPage> {
    const p = new URLSearchParams();
    if (q.statuses?.length) p.set("status", q.statuses.join(","));
    if (q.task) p.set("task", q.task);
    if (q.since) p.set("since", q.since);
    if (q.until) p.set("until", q.until);
    for (const [k, v] of Object.entries(q.metadata ?? {})) p.append("metadata", `${k}=${v}`);
    if (q.cursor) p.set("cursor", q.cursor);
    p.set("limit", String(q.limit ?? 50));
    p.set("counts", "true");
    const body = await this.get<Record<string, unknown>>(`/runs?${p}`);
    const next = body.nextCursor;
    return {
      runs: listOf<RunSummary>(body, "runs"),
      ...(typeof next === "string" && next ? { nextCursor: next } : {}),
      ...(body.counts && typeof body.counts === "object"
        ? { counts: body.counts as Partial<Record<RunStatus, number>> }
        : {}),
      ...(body.countsCapped === true ? { countsCapped: true } : {}),
    };
  }

  run(runId: string): Promise<RunState> {
    return this.get<RunState>(`/runs/${encodeURIComponent(runId)}`);
  }

  async history(runId: string): Promise<HistoryItem[]> {
    const items = listOf<HistoryItem & { at?: string }>(
      await this.get(`/runs/${encodeURIComponent(runId)}/history`),
      "events",
    );
    return items.map((i) => ({ ...i, time: i.time ?? i.at ?? i.event?.at ?? "" }));
  }

  async logs(runId: string): Promise<TaskLogLine[]> {
    return listOf<TaskLogLine>(await this.get(`/runs/${encodeURIComponent(runId)}/logs`), "lines", "logs");
  }

  async chunks(runId: string, after = 0): Promise<{ chunks: StreamChunkItem[]; lastSeq: number }> {
    return this.get(`/runs/${encodeURIComponent(runId)}/chunks?after=${after}`);
  }

  async workers(): Promise<WorkerRegistration[]> {
    return listOf<WorkerRegistration>(await this.get("/workers"), "workers");
  }

  /** Per task, with the leader's concurrency groups and rate limits (when a leader answered). */
  async queues(): Promise<Queues> {
    const body = await this.get<Partial<Queues>>("/queues");
    return {
      source: body.source ?? "projection",
      at: body.at ?? new Date().toISOString(),
      queues: body.queues ?? [],
      concurrency: body.concurrency ?? [],
      rateLimits: body.rateLimits ?? [],
    };
  }

  async crons(): Promise<CronDefinition[]> {
    return listOf<CronDefinition>(await this.get("/crons"), "crons");
  }

  async scheduled(): Promise<RunSummary[]> {
    return listOf<RunSummary>(await this.get("/scheduled"), "runs");
  }

  async trigger(req: TriggerRequest): Promise<{ runId: string }> {
    const body = await call<Record<string, unknown>>(this.session.token, `${this.base}/runs`, {
      method: "POST",
      body: req,
    });
    const runId = body.runId ?? (body.run as { runId?: string } | undefined)?.runId;
    return { runId: String(runId ?? "") };
  }

  cancel(runId: string, reason?: string): Promise<unknown> {
    return call(this.session.token, `${this.base}/runs/${encodeURIComponent(runId)}/cancel`, {
      method: "POST",
      body: reason ? { reason } : {},
    });
  }

  replay(runId: string, options: { from?: string; reason?: string } = {}): Promise<unknown> {
    return call(this.session.token, `${this.base}/runs/${encodeURIComponent(runId)}/replay`, {
      method: "POST",
      body: options,
    });
  }

  /**
   * Follows the namespace's history (`GET events/stream`, server-sent events read with fetch, so the token goes in a
   * header): `onEvents` per batch of `{ runId, type, seq }`, `onReset` when the stream (re)connects or overflows, so
   * the caller reloads what it shows. Reconnects with backoff until the returned function is called.
   */
  follow(handlers: {
    onEvents: (events: FeedEvent[]) => void;
    onReset: () => void;
    onState?: (live: boolean) => void;
  }): () => void {
    const abort = new AbortController();
    let delay = 500;
    const loop = async () => {
      while (!abort.signal.aborted) {
        try {
          const res = await fetch(`${this.base}/events/stream`, {
            headers: { authorization: `Bearer ${this.session.token}`, accept: "text/event-stream" },
            signal: abort.signal,
          });
          if (res.status === 401) {
            onUnauthorized();
            return;
          }
          if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
          const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            const parsed = parseSse(buffer + value);
            buffer = parsed.rest;
            const batch: FeedEvent[] = [];
            for (const m of parsed.messages) {
              if (m.event === "ready") {
                delay = 500;
                handlers.onState?.(true);
                handlers.onReset();
              } else if (m.event === "reset") handlers.onReset();
              else if (m.event === "history") batch.push(JSON.parse(m.data) as FeedEvent);
            }
            if (batch.length) handlers.onEvents(batch);
          }
        } catch {
          // Aborted, or the engine went away: retry below.
        }
        if (abort.signal.aborted) return;
        handlers.onState?.(false);
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 10_000);
      }
    };
    void loop();
    return () => abort.abort();
  }
}

/** One history event pushed by the live feed. */
export interface FeedEvent {
  runId: string;
  type: string;
  seq: number;
  taskRunId?: string;
}
