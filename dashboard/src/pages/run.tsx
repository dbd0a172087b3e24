import type { RunState, TaskLogLine } from "@taskjet/schemas";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import type { HistoryItem, StreamChunkItem } from "../api.ts";
import { Confirm, ErrorNote, Json, StatusBadge } from "../components/common.tsx";
import { Dag } from "../components/dag.tsx";
import { Gantt, WaitReasons } from "../components/gantt.tsx";
import { formatAgo, formatDuration, formatTime, shortId, toJson } from "../format.ts";
import { useApp, useLive, useNow } from "../live.ts";
import { runHref } from "../router.ts";
import { buildTimeline } from "../timeline.ts";

const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);

interface RunData {
  run: RunState;
  history: HistoryItem[];
}

/** One run: state, input/output/error, timeline, DAG, logs, stream chunks and raw history; cancel and replay. */
export function RunPage({ runId }: { runId: string }) {
  const { api } = useApp();
  const now = useNow();
  const { data, error, reload } = useLive<RunData>(
    async () => {
      const [run, history] = await Promise.all([api.run(runId), api.history(runId)]);
      return { run, history };
    },
    (e) => e.runId === runId,
    [runId],
    150,
  );
  const [tab, setTab] = useState<"tasks" | "logs" | "stream" | "history">("tasks");
  const [action, setAction] = useState<"cancel" | "replay">();
  const run = data?.run;
  const active = run ? !TERMINAL.has(run.status) : false;
  const output = useOutput(runId, active, data?.history.length ?? 0);
  const timeline = useMemo(
    () => (data ? buildTimeline(data.history, data.run, now) : undefined),
    // Rebuilt with the clock only while something is still open.
    [data, active ? now : 0],
  );

  if (!run) {
    return (
      <section>
        <h1>Run {runId}</h1>
        {error ? <ErrorNote error={error} /> : <p class="muted">loading…</p>}
      </section>
    );
  }
  const isWorkflow = run.tasks.length > 1 || run.tasks.some((t) => t.parents?.length || t.role);
  const duration = run.startedAt
    ? formatDuration((run.finishedAt ? Date.parse(run.finishedAt) : now) - Date.parse(run.startedAt))
    : "–";
  return (
    <section data-testid="run-page" data-run-status={run.status}>
      <div class="page-head">
        <h1>
          <span class="muted">Run</span> <span class="mono">{run.runId}</span>
        </h1>
        <StatusBadge status={run.status} />
        <span class="grow" />
        {active ? (
          <button type="button" class="danger" onClick={() => setAction("cancel")}>
            Cancel run…
          </button>
        ) : (
          <button type="button" onClick={() => setAction("replay")}>
            Replay…
          </button>
        )}
      </div>
      <ErrorNote error={error} />
      <dl class="facts">
        <div>
          <dt>Task</dt>
          <dd>{run.workflowName}</dd>
        </div>
        <div>
          <dt>Trigger</dt>
          <dd>
            {run.trigger.kind}
            {typeof run.trigger.parentRunId === "string" ? (
              <>
                {" "}
                of <a href={runHref(run.trigger.parentRunId)}>{shortId(run.trigger.parentRunId)}</a>
              </>
            ) : null}
          </dd>
        </div>
        <div>
          <dt>Created</dt>
          <dd title={formatTime(run.createdAt)}>{formatAgo(run.createdAt, now)}</dd>
        </div>
        {run.scheduledAt ? (
          <div>
            <dt>Scheduled for</dt>
            <dd title={formatTime(run.scheduledAt)}>{formatAgo(run.scheduledAt, now)}</dd>
          </div>
        ) : null}
        <div>
          <dt>Started</dt>
          <dd>{formatTime(run.startedAt)}</dd>
        </div>
        <div>
          <dt>Finished</dt>
          <dd>{formatTime(run.finishedAt)}</dd>
        </div>
        <div>
          <dt>Duration</dt>
          <dd>
            {duration}
            {active && run.startedAt ? "…" : ""}
          </dd>
        </div>
        <div>
          <dt>Priority</dt>
          <dd>{run.priority}</dd>
        </div>
        {run.replays ? (
          <div>
            <dt>Replays</dt>
            <dd>{run.replays}</dd>
          </div>
        ) : null}
        <div>
          <dt>Events</dt>
          <dd>{run.eventCount}</dd>
        </div>
        {Object.keys(run.additionalMetadata ?? {}).length ? (
          <div>
            <dt>Metadata</dt>
            <dd>
              {Object.entries(run.additionalMetadata).map(([k, v]) => (
                <span key={k} class="tag">
                  {k}={v}
                </span>
              ))}
            </dd>
          </div>
        ) : null}
      </dl>
      <div class="panels">
        <div class="panel">
          <h2>Input</h2>
          <Json value={run.input} testid="run-input" />
        </div>
        {run.error ? (
          <div class="panel">
            <h2>Error</h2>
            <div class="error-box" data-testid="run-error">
              <b>{run.error.name}</b>: {run.error.message}
              {run.error.stack ? <pre class="stack">{run.error.stack}</pre> : null}
            </div>
            {run.tasks
              .filter((t) => t.error?.stack && t.error.stack !== run.error?.stack)
              .map((t) => (
                <details key={t.taskRunId}>
                  <summary>
                    {t.ref ?? t.taskName}: {t.error?.name}: {t.error?.message}
                  </summary>
                  <pre class="stack">{t.error?.stack}</pre>
                </details>
              ))}
          </div>
        ) : (
          <div class="panel">
            <h2>Output</h2>
            {run.output ? <Json value={run.output} testid="run-output" /> : <p class="muted">none yet</p>}
          </div>
        )}
      </div>
      <h2>Timeline</h2>
      {timeline ? <Gantt timeline={timeline} /> : null}
      {timeline ? <WaitReasons timeline={timeline} /> : null}
      {isWorkflow ? (
        <>
          <h2>Workflow</h2>
          <Dag
            tasks={run.tasks.map((t) => ({
              ref: t.ref ?? t.taskName,
              taskName: t.taskName,
              status: t.status,
              ...(t.parents ? { parents: t.parents } : {}),
              ...(t.role ? { role: t.role } : {}),
            }))}
          />
        </>
      ) : null}
      {run.children?.length ? (
        <>
          <h2>Child runs</h2>
          <ul class="children">
            {run.children.map((c) => (
              <li key={c.runId}>
                <a href={runHref(c.runId)} class="mono">
                  {shortId(c.runId, 14)}
                </a>{" "}
                {c.taskName} <span class="muted">key {c.key}</span>
              </li>
            ))}
          </ul>
        </>
      ) : null}
      <div class="tabs" role="tablist">
        {(
          [
            ["tasks", `Tasks (${run.tasks.length})`],
            ["logs", `Logs (${output.logs.length})`],
            ["stream", `Stream (${output.chunks.length})`],
            ["history", `History (${data?.history.length ?? 0})`],
          ] as const
        ).map(([id, label]) => (
          <button
            type="button"
            role="tab"
            key={id}
            aria-selected={tab === id}
            class={tab === id ? "on" : ""}
            onClick={() => setTab(id)}
          >
            {label}
          </button>
        ))}
      </div>
      {tab === "tasks" ? <TasksTable run={run} /> : null}
      {tab === "logs" ? <Logs lines={output.logs} error={output.error} /> : null}
      {tab === "stream" ? <Chunks chunks={output.chunks} /> : null}
      {tab === "history" ? <History items={data?.history ?? []} /> : null}
      {action === "cancel" ? (
        <CancelDialog runId={run.runId} onClose={() => setAction(undefined)} onDone={reload} />
      ) : null}
      {action === "replay" ? (
        <ReplayDialog run={run} isWorkflow={isWorkflow} onClose={() => setAction(undefined)} onDone={reload} />
      ) : null}
    </section>
  );
}

/**
 * The run's log lines and stream chunks: read once, then again when its history moves and every 2 s while it runs
 * (lines and chunks are not history events); chunks are read incrementally from the last sequence seen.
 */
function useOutput(runId: string, active: boolean, historyLength: number) {
  const { api } = useApp();
  const [logs, setLogs] = useState<TaskLogLine[]>([]);
  const [chunks, setChunks] = useState<StreamChunkItem[]>([]);
  const [error, setError] = useState<Error>();
  const after = useRef(0);
  const busy = useRef(false);
  useEffect(() => {
    after.current = 0;
    setLogs([]);
    setChunks([]);
  }, [runId]);
  const load = async () => {
    if (busy.current) return;
    busy.current = true;
    try {
      const [lines, more] = await Promise.all([
        api.logs(runId),
        api.chunks(runId, after.current).catch(() => ({ chunks: [], lastSeq: after.current })),
      ]);
      setLogs(lines);
      setError(undefined);
      if (more.chunks.length) setChunks((prev) => [...prev, ...more.chunks]);
      after.current = more.lastSeq;
    } catch (err) {
      setError(err as Error);
    } finally {
      busy.current = false;
    }
  };
  useEffect(() => {
    void load();
  }, [runId, historyLength]);
  useEffect(() => {
    if (!active) return;
    const t = setInterval(() => void load(), 2000);
    return () => clearInterval(t);
  }, [runId, active]);
  return { logs, chunks, error };
}

function TasksTable({ run }: { run: RunState }) {
  return (
    <table class="grid" data-testid="tasks-table">
      <thead>
        <tr>
          <th>Task</th>
          <th>Status</th>
          <th>Attempt</th>
          <th>Worker</th>
          <th>Started</th>
          <th>Finished</th>
          <th>Detail</th>
        </tr>
      </thead>
      <tbody>
        {run.tasks.map((t) => (
          <tr key={t.taskRunId}>
            <td title={t.taskRunId}>
              {t.ref ?? t.taskName}
              {t.ref && t.ref !== t.taskName ? <span class="muted"> ({t.taskName})</span> : null}
              {t.role ? <span class="tag">{t.role}</span> : null}
            </td>
            <td>
              <StatusBadge status={t.status} />
            </td>
            <td>{t.attempt}</td>
            <td>{t.workerName ?? "–"}</td>
            <td>{formatTime(t.startedAt)}</td>
            <td>{formatTime(t.finishedAt)}</td>
            <td class="detail">
              {t.waiting ? `${t.waiting.reason}: ${t.waiting.detail}` : null}
              {t.retry ? `retry ${t.retry.attempt}${t.retry.at ? ` at ${formatTime(t.retry.at)}` : ""}` : null}
              {t.rateLimited ? `rate-limited until ${formatTime(t.rateLimited.until)}` : null}
              {t.error && !t.waiting ? `${t.error.name}: ${t.error.message}` : null}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function Logs({ lines, error }: { lines: TaskLogLine[]; error: Error | undefined }) {
  return (
    <div data-testid="logs">
      <ErrorNote error={error} />
      {lines.length === 0 ? <p class="muted">No log lines.</p> : null}
      <table class="grid logs">
        <tbody>
          {lines.map((l, i) => (
            <tr key={i} class={`lvl-${l.level}`}>
              <td class="mono nowrap">{formatTime(l.at)}</td>
              <td class="muted nowrap">#{l.attempt}</td>
              <td class="nowrap">{l.level}</td>
              <td>
                {l.message}
                {l.fields && Object.keys(l.fields).length ? (
                  <code class="fields">{JSON.stringify(l.fields)}</code>
                ) : null}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Chunks({ chunks }: { chunks: StreamChunkItem[] }) {
  const groups = new Map<string, StreamChunkItem[]>();
  for (const c of chunks) {
    const k = `${c.taskRunId} · attempt ${c.attempt}`;
    groups.set(k, [...(groups.get(k) ?? []), c]);
  }
  if (chunks.length === 0) return <p class="muted">No stream chunks (ctx.putStream).</p>;
  return (
    <div data-testid="chunks">
      {[...groups].map(([k, cs]) => (
        <div key={k}>
          <h3 class="muted">{k}</h3>
          <pre class="stream">{cs.map((c) => c.text).join("")}</pre>
        </div>
      ))}
    </div>
  );
}

function History({ items }: { items: HistoryItem[] }) {
  return (
    <table class="grid history" data-testid="history">
      <thead>
        <tr>
          <th>Seq</th>
          <th>Time</th>
          <th>Event</th>
          <th>Task-run</th>
          <th>Data</th>
        </tr>
      </thead>
      <tbody>
        {items.map((h) => (
          <tr key={h.seq} class={h.rejected ? "rejected" : ""}>
            <td class="mono">{h.seq}</td>
            <td class="mono nowrap">{formatTime(h.event?.at ?? h.time)}</td>
            <td>{h.event?.type ?? <span class="error-text">rejected</span>}</td>
            <td class="mono muted">{h.event?.taskRunId ? shortId(h.event.taskRunId, 12) : ""}</td>
            <td>
              {h.rejected ? (
                h.rejected
              ) : (
                <details>
                  <summary>{summarize(h.event?.data)}</summary>
                  <pre class="json">{toJson(h.event)}</pre>
                </details>
              )}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function summarize(data: Record<string, unknown> | undefined): string {
  if (!data) return "";
  const text = JSON.stringify(data);
  return text.length > 110 ? `${text.slice(0, 110)}…` : text;
}

function CancelDialog({ runId, onClose, onDone }: { runId: string; onClose: () => void; onDone: () => void }) {
  const { api, toast } = useApp();
  const [reason, setReason] = useState("");
  return (
    <Confirm
      title="Cancel this run?"
      confirmLabel="Cancel run"
      danger
      onClose={onClose}
      onConfirm={async () => {
        await api.cancel(runId, reason.trim() || "cancelled from the dashboard");
        toast(`Cancelling run ${runId}`);
        onDone();
        onClose();
      }}
    >
      <p>
        Queued tasks leave the queue; running ones are told to stop (their abort signal fires). Run{" "}
        <span class="mono">{runId}</span> ends CANCELLED.
      </p>
      <label>
        Reason (recorded in the history)
        <input
          name="reason"
          value={reason}
          placeholder="cancelled from the dashboard"
          maxLength={200}
          onInput={(e) => setReason((e.target as HTMLInputElement).value)}
        />
      </label>
    </Confirm>
  );
}

function ReplayDialog({
  run,
  isWorkflow,
  onClose,
  onDone,
}: {
  run: RunState;
  isWorkflow: boolean;
  onClose: () => void;
  onDone: () => void;
}) {
  const { api, toast } = useApp();
  const [from, setFrom] = useState("");
  return (
    <Confirm
      title="Replay this run?"
      confirmLabel="Replay"
      onClose={onClose}
      onConfirm={async () => {
        await api.replay(run.runId, { ...(from ? { from } : {}), reason: "replayed from the dashboard" });
        toast(`Replaying run ${run.runId}`);
        onDone();
        onClose();
      }}
    >
      <p>
        The run runs again with its recorded input, as new attempts in the same history. Side effects of its tasks
        happen again.
      </p>
      {isWorkflow ? (
        <label>
          Re-run
          <select value={from} onChange={(e) => setFrom((e.target as HTMLSelectElement).value)}>
            <option value="">every task</option>
            {run.tasks
              .filter((t) => !t.role)
              .map((t) => (
                <option key={t.taskRunId} value={t.ref ?? t.taskName}>
                  from {t.ref ?? t.taskName} (and its descendants)
                </option>
              ))}
          </select>
        </label>
      ) : null}
    </Confirm>
  );
}
