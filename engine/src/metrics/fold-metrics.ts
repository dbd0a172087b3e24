import type { Metric, Registry } from "prom-client";

/** A line of the rendering: prom-client writes `labels` first, then `sharedLabels` (the series'). */
interface Line {
  metricName?: string;
  labels: Record<string, string | number>;
  sharedLabels?: Record<string, string>;
  value: number;
}

/**
 * A metric the fold feeds on its hot path, registered in a prom-client registry and rendered by it. prom-client's own
 * `observe` and `inc` validate and hash the label object of every call: in the engine's profile that was ~13 µs per
 * finished task. Here the caller names the series with a string it already has (a task name, an event type), labels
 * are made from it once per series (`labelsOf`), and an observation is a map lookup and a few additions.
 */
abstract class FoldMetric<S> {
  abstract readonly type: "counter" | "histogram";
  readonly aggregator = "sum";
  protected readonly series = new Map<string, S & { labels: Record<string, string> }>();

  constructor(
    readonly name: string,
    readonly help: string,
    registry: Registry,
    private readonly labelsOf: (key: string) => Record<string, string>,
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  /** What prom-client's registry renders. */
  get(): { name: string; help: string; type: string; aggregator: string; values: Line[] } {
    const values: Line[] = [];
    for (const s of this.series.values()) this.render(s, values);
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.series.clear();
  }

  protected seriesOf(key: string): S {
    let s = this.series.get(key);
    if (!s) {
      s = { ...this.fresh(), labels: this.labelsOf(key) };
      this.series.set(key, s);
    }
    return s;
  }

  /** A new series' state, before its first observation. */
  protected abstract fresh(): S;

  protected abstract render(s: S & { labels: Record<string, string> }, into: Line[]): void;
}

/** A Prometheus counter (`FoldMetric`). */
export class FoldCounter extends FoldMetric<{ value: number }> {
  readonly type = "counter";

  inc(key: string): void {
    this.seriesOf(key).value++;
  }

  protected fresh(): { value: number } {
    return { value: 0 };
  }

  protected render(s: { value: number; labels: Record<string, string> }, into: Line[]): void {
    into.push({ labels: s.labels, value: s.value });
  }
}

interface Buckets {
  /** Observations per bucket (not cumulative), the last one past every bound. */
  counts: Float64Array;
  sum: number;
  count: number;
}

/** A Prometheus histogram (`FoldMetric`): cumulative buckets, `+Inf`, sum and count per series. */
export class FoldHistogram extends FoldMetric<Buckets> {
  readonly type = "histogram";

  constructor(
    name: string,
    help: string,
    private readonly bounds: readonly number[],
    registry: Registry,
    labelsOf: (key: string) => Record<string, string>,
  ) {
    super(name, help, registry, labelsOf);
  }

  observe(key: string, value: number): void {
    if (!Number.isFinite(value)) return;
    const s = this.seriesOf(key);
    let b = 0;
    while (b < this.bounds.length && value > (this.bounds[b] as number)) b++;
    s.counts[b] = (s.counts[b] as number) + 1;
    s.sum += value;
    s.count++;
  }

  protected fresh(): Buckets {
    return { counts: new Float64Array(this.bounds.length + 1), sum: 0, count: 0 };
  }

  protected render(s: Buckets & { labels: Record<string, string> }, into: Line[]): void {
    const bucket = `${this.name}_bucket`;
    let acc = 0;
    this.bounds.forEach((le, i) => {
      acc += s.counts[i] as number;
      into.push({ metricName: bucket, labels: { le }, sharedLabels: s.labels, value: acc });
    });
    into.push({ metricName: bucket, labels: { le: "+Inf" }, sharedLabels: s.labels, value: s.count });
    into.push({ metricName: `${this.name}_sum`, labels: s.labels, value: s.sum });
    into.push({ metricName: `${this.name}_count`, labels: s.labels, value: s.count });
  }
}
