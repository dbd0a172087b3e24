import { formatDuration } from "../format.ts";
import type { SegmentKind, Timeline } from "../timeline.ts";

const KIND_LABELS: Record<SegmentKind, string> = {
  scheduled: "scheduled",
  pending: "waiting for parents",
  queued: "queued",
  waiting: "held back (concurrency, rate limit, no worker)",
  running: "running",
  backoff: "retry backoff",
  "rate-limited": "rate-limited upstream",
  sleeping: "durable sleep",
  "event-wait": "waiting for an event",
};

/** The run's task-runs over time: one row each, one bar per state, hover for the reason and duration. */
export function Gantt({ timeline }: { timeline: Timeline }) {
  const span = Math.max(1, timeline.end - timeline.start);
  const pct = (t: number) => `${(((t - timeline.start) / span) * 100).toFixed(3)}%`;
  const width = (a: number, b: number) => `max(3px, ${(((b - a) / span) * 100).toFixed(3)}%)`;
  const segments = timeline.rows.flatMap((r) => r.segments);
  const kinds = new Set(segments.map((s) => s.kind));
  const outcomes = new Set(segments.filter((s) => s.kind === "running").map((s) => s.outcome));
  const ticks = [0, 0.25, 0.5, 0.75, 1];
  return (
    <div class="gantt" data-testid="timeline">
      <div class="gantt-row gantt-axis">
        <div class="gantt-label" />
        <div class="gantt-track">
          {ticks.map((f) => (
            <span key={f} class="tick" style={{ left: `${f * 100}%` }}>
              +{formatDuration(f * span)}
            </span>
          ))}
        </div>
      </div>
      {timeline.rows.map((row) => (
        <div class="gantt-row" key={row.taskRunId} data-task-run={row.taskRunId}>
          <div class="gantt-label" title={row.taskRunId}>
            {row.name}
          </div>
          <div class="gantt-track">
            {row.segments.map((s, i) => (
              <div
                key={i}
                class={`bar k-${s.kind}${s.open ? " open" : ""}${s.outcome ? ` o-${s.outcome.replace(" ", "-")}` : ""}`}
                style={{ left: pct(s.start), width: width(s.start, s.end) }}
                title={`${s.label}\n${formatDuration(s.end - s.start)}${s.open ? " so far" : ""}${s.outcome ? ` → ${s.outcome}` : ""}`}
                data-kind={s.kind}
              >
                {s.kind === "running" && s.attempt !== undefined ? <span class="bar-text">#{s.attempt}</span> : null}
              </div>
            ))}
            {row.marks.map((m) => (
              <span key={`${m.at}${m.label}`} class="mark" style={{ left: pct(m.at) }} title={m.label} />
            ))}
          </div>
        </div>
      ))}
      <div class="legend">
        {[...kinds].map((k) => (
          <span key={k}>
            <i class={`swatch k-${k}`} />
            {KIND_LABELS[k]}
          </span>
        ))}
        {outcomes.has("completed") ? (
          <span>
            <i class="swatch k-running o-completed" />
            attempt completed
          </span>
        ) : null}
        {outcomes.has("failed") || outcomes.has("timed out") ? (
          <span>
            <i class="swatch k-running o-failed" />
            attempt failed
          </span>
        ) : null}
      </div>
    </div>
  );
}

/** Why the run's tasks waited, in words (the bars' hover text, listed). */
export function WaitReasons({ timeline }: { timeline: Timeline }) {
  const waits = timeline.rows.flatMap((r) =>
    r.segments
      .filter((s) => s.kind !== "running" && s.kind !== "pending" && s.kind !== "scheduled" && s.end - s.start >= 0)
      .filter((s) => s.kind !== "queued" || s.end - s.start > 1000)
      .map((s) => ({ row: r.name, s })),
  );
  if (waits.length === 0) return null;
  return (
    <ul class="waits" data-testid="wait-reasons">
      {waits.map(({ row, s }) => (
        <li key={`${row}${s.start}${s.kind}`}>
          <i class={`swatch k-${s.kind}`} /> <b>{row}</b> {s.label} — {formatDuration(s.end - s.start)}
          {s.open ? " so far" : ""}
        </li>
      ))}
    </ul>
  );
}
