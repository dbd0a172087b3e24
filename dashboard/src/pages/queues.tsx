import type { Queues } from "@taskjet/schemas";
import { useState } from "preact/hooks";
import { EmptyRow, ErrorNote } from "../components/common.tsx";
import { TriggerDialog } from "../components/trigger.tsx";
import { formatAgo, formatDuration, formatTime } from "../format.ts";
import { useApp, useLive, useNow } from "../live.ts";

/**
 * Per task: queued depth, oldest queued age, running, retrying, why the oldest waits; then the scheduler's concurrency
 * groups and rate limits (when the namespace's leader answered). Reloaded after history events.
 */
export function QueuesPage() {
  const { api } = useApp();
  const now = useNow();
  const [trigger, setTrigger] = useState<string>();
  const { data, error, loading, reload } = useLive<Queues>(
    () => api.queues(),
    () => true,
    [],
    800,
  );
  const queues = data?.queues ?? [];
  // Groups and rate limits live in the leader's memory: the projection cannot tell them.
  const leaderOnly = data?.source === "projection" ? "Known only to the leading engine (none answered)." : undefined;
  return (
    <section>
      <div class="page-head">
        <h1>Queues</h1>
        {data ? (
          <span
            class="muted"
            title={
              data.source === "leader"
                ? "the leading engine's scheduler: exact and live"
                : "no leader answered: computed from the run projection, which lags (a queued run shows after about 10 s)"
            }
          >
            from the {data.source === "leader" ? "scheduler" : "projection"} · {formatTime(data.at)}
          </span>
        ) : null}
        <span class="grow" />
        <button type="button" onClick={reload}>
          Refresh
        </button>
      </div>
      <ErrorNote error={error} />
      <table class="grid" data-testid="queues-table">
        <thead>
          <tr>
            <th>Task</th>
            <th class="num">Queued</th>
            <th>Oldest queued</th>
            <th class="num">Running</th>
            <th class="num">Retrying</th>
            <th class="num">Workers</th>
            <th>Oldest waits on</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {queues.map((q) => (
            <tr key={q.taskName} data-task={q.taskName}>
              <td>
                <a href={`#/runs?${new URLSearchParams({ task: q.taskName, status: "QUEUED,RUNNING" })}`}>
                  {q.taskName}
                </a>
              </td>
              <td class={q.queued > 0 ? "num strong" : "num"}>{q.queued}</td>
              <td title={formatTime(q.oldestQueuedAt)}>{q.oldestQueuedAt ? formatAgo(q.oldestQueuedAt, now) : "–"}</td>
              <td class="num">{q.running}</td>
              <td class="num">{q.retrying}</td>
              <td class={q.workers === 0 ? "num warn-text" : "num"}>{q.workers}</td>
              <td class="detail">
                {q.waiting ? (
                  <span class="tag warn">
                    {q.waiting.reason}: {q.waiting.detail}
                  </span>
                ) : q.queued > 0 && q.workers === 0 ? (
                  <span class="warn-text">no live worker has registered this task</span>
                ) : (
                  "–"
                )}
              </td>
              <td>
                <button type="button" class="small" onClick={() => setTrigger(q.taskName)}>
                  Trigger…
                </button>
              </td>
            </tr>
          ))}
          <EmptyRow cols={8} show={queues.length === 0 && !loading}>
            Nothing queued or running.
          </EmptyRow>
        </tbody>
      </table>
      <div class="page-head">
        <h1>Concurrency</h1>
      </div>
      <table class="grid" data-testid="concurrency-table">
        <thead>
          <tr>
            <th>Group</th>
            <th class="num">Running</th>
            <th class="num">Max</th>
            <th class="num">Members</th>
            <th class="num">Lanes waiting</th>
          </tr>
        </thead>
        <tbody>
          {(data?.concurrency ?? []).map((g) => (
            <tr key={g.group}>
              <td class="mono">{g.group}</td>
              <td class={g.running >= g.maxRuns ? "num warn-text strong" : "num"}>{g.running}</td>
              <td class="num">{g.maxRuns}</td>
              <td class="num">{g.members}</td>
              <td class="num">{g.waitingLanes}</td>
            </tr>
          ))}
          <EmptyRow cols={5} show={(data?.concurrency ?? []).length === 0}>
            {leaderOnly ?? "No group."}
          </EmptyRow>
        </tbody>
      </table>
      <div class="page-head">
        <h1>Rate limits</h1>
      </div>
      <table class="grid" data-testid="ratelimits-table">
        <thead>
          <tr>
            <th>Key</th>
            <th>Used / limit</th>
            <th class="num">Reserved</th>
            <th>Window</th>
            <th>Paused until</th>
          </tr>
        </thead>
        <tbody>
          {(data?.rateLimits ?? []).map((r) => (
            <tr key={r.key}>
              <td class="mono">{r.key}</td>
              <td class={r.used >= r.limit ? "warn-text strong" : ""}>
                {r.used} / {r.limit}
              </td>
              <td class="num">{r.reserved}</td>
              <td>{formatDuration(r.windowMs)}</td>
              <td class={r.pausedUntil ? "warn-text" : "muted"}>
                {r.pausedUntil ? formatAgo(r.pausedUntil, now) : "–"}
              </td>
            </tr>
          ))}
          <EmptyRow cols={5} show={(data?.rateLimits ?? []).length === 0}>
            {leaderOnly ?? "No rate limit."}
          </EmptyRow>
        </tbody>
      </table>
      {trigger !== undefined ? <TriggerDialog task={trigger} onClose={() => setTrigger(undefined)} /> : null}
    </section>
  );
}
