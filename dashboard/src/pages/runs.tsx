import type { RunStatus, RunSummary } from "@taskjet/schemas";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import type { RunPage, RunQuery } from "../api.ts";
import { EmptyRow, ErrorNote, StatusBadge } from "../components/common.tsx";
import { TriggerDialog } from "../components/trigger.tsx";
import { formatAgo, formatDuration, formatTime, isoToLocal, localToIso, shortId } from "../format.ts";
import { useApp, useFeed, useLive, useNow } from "../live.ts";
import { navigate, runHref } from "../router.ts";

export const STATUSES: RunStatus[] = ["SCHEDULED", "PENDING", "QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"];
const PAGE_SIZE = 50;

/** `a=1, b=2` → `{ a: "1", b: "2" }`; pairs without `=` are left out. */
export function parseMetadata(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of text.split(",")) {
    const i = pair.indexOf("=");
    if (i > 0) out[pair.slice(0, i).trim()] = pair.slice(i + 1).trim();
  }
  return out;
}

const AGO_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A since/until as the API takes it (an ISO time, or a duration ago: `90s`, `2h`, `7d`) as an ISO time. */
export function instant(value: string, now = Date.now()): string | undefined {
  const ago = /^(\d+)(ms|s|m|h|d)$/.exec(value);
  const t = ago ? now - Number(ago[1]) * (AGO_UNITS[ago[2] as string] as number) : Date.parse(value);
  return Number.isNaN(t) ? undefined : new Date(t).toISOString();
}

/** Whether a run belongs on a list with these filters (for runs learnt of from the live feed). */
export function matches(run: RunSummary, q: RunQuery): boolean {
  if (q.statuses?.length && !(q.statuses as string[]).includes(run.status)) return false;
  if (q.task && run.workflowName !== q.task && !run.tasks.some((t) => t.taskName === q.task)) return false;
  const since = q.since ? instant(q.since) : undefined;
  const until = q.until ? instant(q.until) : undefined;
  if (since && run.createdAt < since) return false;
  if (until && run.createdAt >= until) return false;
  for (const [k, v] of Object.entries(q.metadata ?? {})) if (run.additionalMetadata?.[k] !== v) return false;
  return true;
}

function queryOf(params: URLSearchParams): RunQuery {
  const statuses = (params.get("status") ?? "")
    .split(",")
    .filter((s): s is RunStatus => (STATUSES as string[]).includes(s));
  const metadata = parseMetadata(params.get("meta") ?? "");
  return {
    ...(statuses.length ? { statuses } : {}),
    ...(params.get("task") ? { task: params.get("task") as string } : {}),
    ...(params.get("since") ? { since: params.get("since") as string } : {}),
    ...(params.get("until") ? { until: params.get("until") as string } : {}),
    ...(Object.keys(metadata).length ? { metadata } : {}),
  };
}

/** The runs list: filters in the URL, counts per status, cursor paging, rows kept live from the feed. */
export function RunsPage({ params }: { params: URLSearchParams }) {
  const { api } = useApp();
  const now = useNow();
  const key = params.toString();
  const query = useMemo(() => queryOf(params), [key]);
  const [cursors, setCursors] = useState<string[]>([]);
  const cursor = cursors[cursors.length - 1];
  const [triggering, setTriggering] = useState(false);
  // Runs fetched one by one as the feed names them: fresher than the list (the projection trails the log).
  const [fresh, setFresh] = useState<Map<string, RunSummary>>(new Map());
  const wanted = useRef(new Set<string>());
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  useEffect(() => {
    setCursors([]);
    setFresh(new Map());
  }, [key]);

  const { data, error, loading } = useLive<RunPage>(
    () => api.runs({ ...query, ...(cursor ? { cursor } : {}), limit: PAGE_SIZE }),
    () => true,
    [key, cursor],
    1200,
  );
  const shown = useRef(new Set<string>());
  useFeed((batch) => {
    if (batch === "reset") return;
    // A burst of new runs is left to the list's reload: fetching each one would not keep up.
    const created = batch.filter((e) => e.type === "RunCreated").length;
    for (const e of batch) {
      if (shown.current.has(e.runId) || (e.type === "RunCreated" && !cursor && created <= 20)) {
        wanted.current.add(e.runId);
      }
    }
    if (wanted.current.size === 0 || timer.current) return;
    timer.current = setTimeout(async () => {
      timer.current = undefined;
      const ids = [...wanted.current].slice(0, 50);
      for (const id of ids) wanted.current.delete(id);
      const states = await Promise.all(ids.map((id) => api.run(id).catch(() => undefined)));
      setFresh((prev) => {
        const next = new Map(prev);
        for (const s of states) {
          if (!s) continue;
          next.delete(s.runId);
          next.set(s.runId, s);
        }
        // Kept while the list may still trail them; the oldest go first.
        for (const id of [...next.keys()].slice(0, Math.max(0, next.size - 200))) next.delete(id);
        return next;
      });
    }, 250);
  });

  const rows = useMemo(() => {
    const list = (data?.runs ?? []).map((r) => {
      const f = fresh.get(r.runId);
      return f && f.eventCount > r.eventCount ? f : r;
    });
    const known = new Set(list.map((r) => r.runId));
    const extra = cursor ? [] : [...fresh.values()].filter((r) => !known.has(r.runId));
    const all = [...extra, ...list].filter((r) => matches(r, query));
    all.sort((a, b) =>
      a.createdAt === b.createdAt ? (a.runId < b.runId ? 1 : -1) : a.createdAt < b.createdAt ? 1 : -1,
    );
    return all;
  }, [data, fresh, query, cursor]);
  shown.current = new Set(rows.map((r) => r.runId));

  const setFilter = (change: Record<string, string | undefined>) => {
    const next: Record<string, string | undefined> = Object.fromEntries(params.entries());
    navigate("/runs", { ...next, ...change });
  };
  const selected = new Set(query.statuses ?? []);
  const toggleStatus = (s: RunStatus, only: boolean) => {
    const next = only ? new Set([s]) : new Set(selected);
    if (!only) {
      if (next.has(s)) next.delete(s);
      else next.add(s);
    }
    setFilter({ status: [...next].join(",") || undefined });
  };
  const counts = data?.counts;
  const total = counts ? Object.values(counts).reduce((a, b) => a + (b ?? 0), 0) : undefined;

  return (
    <section>
      <div class="page-head">
        <h1>Runs</h1>
        <button type="button" class="primary" onClick={() => setTriggering(true)}>
          Trigger a run…
        </button>
      </div>
      <div class="status-chips" data-testid="status-counts">
        <button
          type="button"
          class={`chip${selected.size === 0 ? " on" : ""}`}
          onClick={() => setFilter({ status: undefined })}
        >
          All{total !== undefined ? <b>{total}</b> : null}
        </button>
        {STATUSES.map((s) => (
          <button
            type="button"
            key={s}
            class={`chip s-${s.toLowerCase()}${selected.has(s) ? " on" : ""}`}
            data-status={s}
            title="click: only this status; ctrl/⌘-click: add or remove it"
            onClick={(e) => toggleStatus(s, !(e.ctrlKey || e.metaKey))}
          >
            {s}
            {counts ? <b data-count={s}>{counts[s] ?? 0}</b> : null}
          </button>
        ))}
        {data?.countsCapped ? <span class="muted">counts capped</span> : null}
      </div>
      {/* Remounted when the URL changes: its fields start from the URL (no effect racing the first keystrokes). */}
      <Filters key={key} params={params} onApply={setFilter} />
      <ErrorNote error={error} />
      <table class="grid" data-testid="runs-table">
        <thead>
          <tr>
            <th>Run</th>
            <th>Task</th>
            <th>Status</th>
            <th>Trigger</th>
            <th>Created</th>
            <th>Duration</th>
            <th>Metadata</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((r) => (
            <tr key={r.runId} data-run-id={r.runId} data-status={r.status}>
              <td class="mono">
                <a href={runHref(r.runId)} title={r.runId}>
                  {shortId(r.runId, 14)}
                </a>
              </td>
              <td>
                {r.workflowName}
                {r.tasks.length > 1 ? <span class="muted"> · {r.tasks.length} tasks</span> : null}
              </td>
              <td>
                <StatusBadge status={r.status} />
              </td>
              <td class="muted">{r.trigger?.kind}</td>
              <td title={formatTime(r.createdAt)}>{formatAgo(r.createdAt, now)}</td>
              <td>{runDuration(r, now)}</td>
              <td>
                {Object.entries(r.additionalMetadata ?? {}).map(([k, v]) => (
                  <span key={k} class="tag">
                    {k}={v}
                  </span>
                ))}
              </td>
            </tr>
          ))}
          <EmptyRow cols={7} show={rows.length === 0 && !loading}>
            No runs match.
          </EmptyRow>
        </tbody>
      </table>
      <div class="pager">
        <button type="button" disabled={cursors.length === 0} onClick={() => setCursors(cursors.slice(0, -1))}>
          ← Newer
        </button>
        <span class="muted">
          page {cursors.length + 1}
          {loading ? " · loading…" : ""}
        </span>
        <button
          type="button"
          disabled={!data?.nextCursor}
          onClick={() => data?.nextCursor && setCursors([...cursors, data.nextCursor])}
        >
          Older →
        </button>
      </div>
      {triggering ? <TriggerDialog onClose={() => setTriggering(false)} /> : null}
    </section>
  );
}

/** "4.2 s", or how long it has been running. */
export function runDuration(r: RunSummary, now: number): string {
  if (!r.startedAt) return "–";
  const end = r.finishedAt ? Date.parse(r.finishedAt) : now;
  return formatDuration(end - Date.parse(r.startedAt)) + (r.finishedAt ? "" : "…");
}

function Filters({
  params,
  onApply,
}: {
  params: URLSearchParams;
  onApply: (change: Record<string, string | undefined>) => void;
}) {
  const [task, setTask] = useState(params.get("task") ?? "");
  const [since, setSince] = useState(isoToLocal(params.get("since") ?? undefined));
  const [until, setUntil] = useState(isoToLocal(params.get("until") ?? undefined));
  const [meta, setMeta] = useState(params.get("meta") ?? "");
  return (
    <form
      class="filters"
      onSubmit={(e) => {
        e.preventDefault();
        onApply({
          task: task.trim() || undefined,
          since: localToIso(since),
          until: localToIso(until),
          meta: meta.trim() || undefined,
        });
      }}
    >
      <label>
        Task
        <input
          name="task"
          value={task}
          placeholder="any"
          onInput={(e) => setTask((e.target as HTMLInputElement).value)}
        />
      </label>
      <label>
        Created from
        <input type="datetime-local" value={since} onInput={(e) => setSince((e.target as HTMLInputElement).value)} />
      </label>
      <label>
        to
        <input type="datetime-local" value={until} onInput={(e) => setUntil((e.target as HTMLInputElement).value)} />
      </label>
      <label>
        Metadata
        <input
          name="meta"
          value={meta}
          placeholder="key=value, key2=value2"
          onInput={(e) => setMeta((e.target as HTMLInputElement).value)}
        />
      </label>
      <button type="submit">Apply</button>
      <button
        type="button"
        onClick={() => onApply({ task: undefined, since: undefined, until: undefined, meta: undefined })}
      >
        Clear
      </button>
    </form>
  );
}
