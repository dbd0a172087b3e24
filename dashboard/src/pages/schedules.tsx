import type { CronDefinition, RunSummary } from "@taskjet/schemas";
import { EmptyRow, ErrorNote, StatusBadge } from "../components/common.tsx";
import { formatAgo, formatTime, shortId } from "../format.ts";
import { useApp, useLive, useNow } from "../live.ts";
import { runHref } from "../router.ts";

const SCHEDULE_EVENTS = new Set(["RunCreated", "RunDue", "RunRescheduled", "RunCancelled"]);

/** Cron schedules and runs scheduled for later. */
export function SchedulesPage() {
  const { api } = useApp();
  const now = useNow();
  const crons = useLive<CronDefinition[]>(
    () => api.crons(),
    (e) => e.type === "RunCreated",
    [],
    1500,
  );
  const scheduled = useLive<RunSummary[]>(
    () => api.scheduled(),
    (e) => SCHEDULE_EVENTS.has(e.type),
    [],
    500,
  );
  return (
    <section>
      <div class="page-head">
        <h1>Crons</h1>
      </div>
      <ErrorNote error={crons.error} />
      <table class="grid" data-testid="crons-table">
        <thead>
          <tr>
            <th>Name</th>
            <th>Task</th>
            <th>Expression</th>
            <th>Time zone</th>
            <th>Catch up</th>
            <th>Source</th>
            <th>Input</th>
            <th>Created</th>
          </tr>
        </thead>
        <tbody>
          {(crons.data ?? []).map((c) => (
            <tr key={c.name}>
              <td>
                <b>{c.name}</b>
              </td>
              <td>{c.taskName}</td>
              <td class="mono">{c.expression}</td>
              <td>{c.timezone ?? "UTC"}</td>
              <td>{c.catchUp}</td>
              <td class="muted">{c.source}</td>
              <td class="mono detail">{JSON.stringify(c.input)}</td>
              <td title={formatTime(c.createdAt)}>{formatAgo(c.createdAt, now)}</td>
            </tr>
          ))}
          <EmptyRow cols={8} show={(crons.data ?? []).length === 0 && !crons.loading}>
            No cron schedules.
          </EmptyRow>
        </tbody>
      </table>
      <div class="page-head">
        <h1>Scheduled runs</h1>
      </div>
      <ErrorNote error={scheduled.error} />
      <table class="grid" data-testid="scheduled-table">
        <thead>
          <tr>
            <th>Run</th>
            <th>Task</th>
            <th>Status</th>
            <th>Runs</th>
            <th>At</th>
            <th>Created</th>
          </tr>
        </thead>
        <tbody>
          {(scheduled.data ?? []).map((r) => (
            <tr key={r.runId} data-run-id={r.runId}>
              <td class="mono">
                <a href={runHref(r.runId)}>{shortId(r.runId, 14)}</a>
              </td>
              <td>{r.workflowName}</td>
              <td>
                <StatusBadge status={r.status} />
              </td>
              <td>{formatAgo(r.scheduledAt, now)}</td>
              <td>{formatTime(r.scheduledAt)}</td>
              <td title={formatTime(r.createdAt)}>{formatAgo(r.createdAt, now)}</td>
            </tr>
          ))}
          <EmptyRow cols={6} show={(scheduled.data ?? []).length === 0 && !scheduled.loading}>
            No runs scheduled for later.
          </EmptyRow>
        </tbody>
      </table>
    </section>
  );
}
