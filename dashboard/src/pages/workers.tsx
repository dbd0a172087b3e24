import type { WorkerRegistration } from "@taskjet/schemas";
import { EmptyRow, ErrorNote } from "../components/common.tsx";
import { formatAgo, formatDuration, formatTime, shortId } from "../format.ts";
import { useApp, useInterval, useLive, useNow } from "../live.ts";

/** Event types that move a worker's load: its row refreshes after them. */
const LOAD_EVENTS = new Set([
  "TaskStarted",
  "TaskCompleted",
  "TaskFailed",
  "TaskTimedOut",
  "TaskCancelled",
  "RunCancelled",
  "TaskReassigned",
  "TaskRateLimited",
  "TaskSlotReleased",
  "DurableSleeping",
  "DurableWaitingForEvent",
]);

/**
 * Live workers: labels, slots used, heartbeat age, what each runs. Refreshed after history events that move load;
 * registrations themselves are not in the log, so the list is also re-read every 15 s while shown.
 */
export function WorkersPage() {
  const { api } = useApp();
  const now = useNow();
  const { data, error, loading, reload } = useLive<WorkerRegistration[]>(
    () => api.workers(),
    (e) => LOAD_EVENTS.has(e.type),
    [],
    800,
  );
  useInterval(reload, 15_000);
  const workers = data ?? [];
  return (
    <section>
      <div class="page-head">
        <h1>Workers</h1>
        <span class="muted" title="slots and running attempts are as of each worker's last heartbeat">
          {workers.length} live · load as of each heartbeat
        </span>
        <span class="grow" />
        <button type="button" onClick={reload}>
          Refresh
        </button>
      </div>
      <ErrorNote error={error} />
      <table class="grid" data-testid="workers-table">
        <thead>
          <tr>
            <th>Name</th>
            <th>Labels</th>
            <th>Slots</th>
            <th>Heartbeat</th>
            <th>Running</th>
            <th>Tasks</th>
            <th>Host</th>
          </tr>
        </thead>
        <tbody>
          {workers.map((w) => {
            const age = now - Date.parse(w.heartbeatAt);
            return (
              <tr key={w.workerId} data-worker={w.name}>
                <td>
                  <b>{w.name}</b>
                  <div class="muted mono" title={w.workerId}>
                    {shortId(w.workerId, 12)}
                  </div>
                  {w.draining ? <span class="tag warn">draining</span> : null}
                </td>
                <td>
                  {Object.entries(w.labels ?? {}).map(([k, v]) => (
                    <span key={k} class="tag">
                      {k}={String(v)}
                    </span>
                  ))}
                </td>
                <td>
                  <Slots used={w.usedSlots} total={w.slots} />
                  {w.durableSlots ? (
                    <div class="muted">
                      durable {w.usedDurableSlots}/{w.durableSlots}
                    </div>
                  ) : null}
                </td>
                <td class={age > 30_000 ? "warn-text" : ""} title={formatTime(w.heartbeatAt)}>
                  {formatAgo(w.heartbeatAt, now)}
                </td>
                <td>
                  {Object.entries(w.runningTasks ?? {}).map(([t, n]) => (
                    <span key={t} class="tag run">
                      {t} ×{n}
                    </span>
                  ))}
                  {Object.keys(w.runningTasks ?? {}).length === 0 ? <span class="muted">idle</span> : null}
                </td>
                <td class="detail">{w.tasks.join(", ")}</td>
                <td class="muted">
                  {w.hostname}:{w.pid}
                  <div>
                    up {formatDuration(now - Date.parse(w.startedAt))} · sdk {w.sdkVersion}
                  </div>
                </td>
              </tr>
            );
          })}
          <EmptyRow cols={7} show={workers.length === 0 && !loading}>
            No live worker in this namespace.
          </EmptyRow>
        </tbody>
      </table>
    </section>
  );
}

/** `used/total` with a bar. */
export function Slots({ used, total }: { used: number; total: number }) {
  const f = total > 0 ? Math.min(1, used / total) : 0;
  return (
    <div class="slots" title={`${used} of ${total} slots used`}>
      <span class="slots-bar">
        <i style={{ width: `${f * 100}%` }} class={f >= 1 ? "full" : ""} />
      </span>
      {used}/{total}
    </div>
  );
}
