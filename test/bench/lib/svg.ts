/**
 * Horizontal bar charts as plain SVG text: no plotting dependency, and the files diff and render anywhere (GitHub,
 * browsers). A chart is a grid of panels; each panel has its own scale, because the systems compared differ by orders
 * of magnitude on some measures (pg-boss's 100 jobs/s beside 57,000 enqueues/s).
 */

export interface Row {
  label: string;
  /** One value per series of the panel; null when not measured. */
  values: (number | null)[];
  /** Drawn in the highlight colour (Taskjet). */
  highlight?: boolean;
  /** Short text after the bars, e.g. a ratio. */
  note?: string;
}

export interface Panel {
  title: string;
  unit: string;
  /** Log for latencies, which span 1 ms to seconds. */
  scale: "linear" | "log";
  /** Names of the bars of each row (p50, p95, p99), or one name. */
  series: string[];
  rows: Row[];
  /** Vertical dashed lines: targets. */
  marks?: { value: number; label: string }[];
}

const FONT = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif";
const PANEL_W = 620;
const LABEL_W = 165;
const VALUE_W = 215;
const BAR_H = 11;
const ROW_GAP = 7;
const HEAD_H = 54;
const AXIS_H = 22;
const GAP = 24;
/** Peers in shades of grey, Taskjet in orange; darker shade = higher percentile. */
const SHADES = { peer: ["#adb5bd", "#868e96", "#495057"], taskjet: ["#ffa94d", "#f76707", "#c92a2a"] };

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** 1,234 / 56.7 / 1.23: three significant digits at most, which is all a chart can show. */
function formatValue(v: number): string {
  if (v >= 1000) return Math.round(v).toLocaleString("en-US");
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

/** Axis ticks are round numbers: 0, 2,500, 10, 0.1. */
const formatTick = (v: number) => (v >= 1 || v === 0 ? v.toLocaleString("en-US") : String(Number(v.toPrecision(1))));

/** Shade of series `i` of `k`: the darkest for the highest percentile, the middle one for a single series. */
const shadeIndex = (i: number, k: number) => (k === 1 ? 1 : k === 2 ? i * 2 : i);

interface Axis {
  x(v: number): number;
  ticks: number[];
}

/** Maps values to [0, width]: linear from 0 to a round maximum, or log over whole decades. */
function axis(panel: Panel, width: number): Axis {
  const values = panel.rows.flatMap((r) => r.values).filter((v): v is number => v !== null && v > 0);
  const all = [...values, ...(panel.marks ?? []).map((m) => m.value)];
  const max = all.length ? Math.max(...all) : 1;
  if (panel.scale === "log") {
    const lo = Math.floor(Math.log10(Math.min(...all, max)));
    const hi = Math.max(lo + 1, Math.ceil(Math.log10(max)));
    const ticks = Array.from({ length: hi - lo + 1 }, (_, i) => 10 ** (lo + i));
    return { x: (v) => ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * width, ticks };
  }
  const step = 10 ** Math.floor(Math.log10(max));
  const unit = [1, 2, 2.5, 5, 10].map((m) => m * step).find((s) => max / s <= 5) ?? step * 10;
  const top = Math.ceil(max / unit) * unit;
  const ticks = Array.from({ length: Math.round(top / unit) + 1 }, (_, i) => i * unit);
  return { x: (v) => (v / top) * width, ticks };
}

function panelHeight(panel: Panel): number {
  const rowH = panel.series.length * BAR_H + ROW_GAP;
  return HEAD_H + panel.rows.length * rowH + AXIS_H;
}

function drawPanel(panel: Panel, x0: number, y0: number): string[] {
  const out: string[] = [];
  const plotW = PANEL_W - LABEL_W - VALUE_W;
  const a = axis(panel, plotW);
  const px = x0 + LABEL_W;
  const rowH = panel.series.length * BAR_H + ROW_GAP;
  const plotTop = y0 + HEAD_H;
  const plotBottom = plotTop + panel.rows.length * rowH;
  out.push(`<text x="${x0}" y="${y0 + 14}" font-weight="600" font-size="13">${esc(panel.title)}</text>`);
  const legend = panel.series.length > 1 ? ` · bars: ${panel.series.join(", ")}` : "";
  out.push(
    `<text x="${x0}" y="${y0 + 30}" fill="#495057">${esc(`${panel.unit}, ${panel.scale} scale${legend}`)}</text>`,
  );
  for (const t of a.ticks) {
    const x = px + a.x(t);
    out.push(`<line x1="${x}" y1="${plotTop - 2}" x2="${x}" y2="${plotBottom}" stroke="#e9ecef"/>`);
    out.push(`<text x="${x}" y="${plotBottom + 14}" text-anchor="middle" fill="#868e96">${formatTick(t)}</text>`);
  }
  for (const m of panel.marks ?? []) {
    const x = px + a.x(m.value);
    out.push(
      `<line x1="${x}" y1="${plotTop - 4}" x2="${x}" y2="${plotBottom}" stroke="#2b8a3e" stroke-dasharray="4 3"/>`,
    );
    out.push(`<text x="${x + 3}" y="${plotTop - 7}" fill="#2b8a3e" font-size="11">${esc(m.label)}</text>`);
  }
  panel.rows.forEach((row, i) => {
    const ry = plotTop + i * rowH;
    const mid = ry + (panel.series.length * BAR_H) / 2;
    out.push(
      `<text x="${px - 6}" y="${mid + 4}" text-anchor="end"${row.highlight ? ' font-weight="600"' : ""}>${esc(row.label)}</text>`,
    );
    const shades = row.highlight ? SHADES.taskjet : SHADES.peer;
    const texts: string[] = [];
    row.values.forEach((v, s) => {
      const y = ry + s * BAR_H;
      const fill = shades[shadeIndex(s, panel.series.length)];
      if (v === null) {
        texts.push("—");
        return;
      }
      const w = Math.max(1, a.x(v));
      out.push(`<rect x="${px}" y="${y}" width="${w.toFixed(1)}" height="${BAR_H - 1}" fill="${fill}"/>`);
      texts.push(formatValue(v));
    });
    // A row of several bars has room for the note on a line of its own; a single bar's row has not.
    const ownLine = panel.series.length > 1 && row.note;
    const label = texts.join(" / ") + (row.note && !ownLine ? ` · ${row.note}` : "");
    const tx = px + plotW + 6;
    out.push(`<text x="${tx}" y="${mid + (ownLine ? -2 : 4)}" fill="#212529" font-size="11">${esc(label)}</text>`);
    if (ownLine)
      out.push(`<text x="${tx}" y="${mid + 11}" fill="#495057" font-size="11">${esc(row.note ?? "")}</text>`);
  });
  return out;
}

/** The chart: `title`, a line of conditions under it, and the panels in `columns` columns. */
export function barChart(title: string, subtitle: string, panels: Panel[], columns = 2): string {
  const cols = Math.min(columns, panels.length);
  const gridRows = Math.ceil(panels.length / cols);
  const rowHeights = Array.from({ length: gridRows }, (_, r) =>
    Math.max(...panels.slice(r * cols, r * cols + cols).map(panelHeight)),
  );
  const width = cols * PANEL_W + (cols - 1) * GAP + 2 * GAP;
  const top = 60;
  const height = top + rowHeights.reduce((s, h) => s + h + GAP, 0);
  const body: string[] = [];
  let y = top;
  for (let r = 0; r < gridRows; r++) {
    for (let c = 0; c < cols; c++) {
      const panel = panels[r * cols + c];
      if (panel) body.push(...drawPanel(panel, GAP + c * (PANEL_W + GAP), y));
    }
    y += (rowHeights[r] as number) + GAP;
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${FONT}" font-size="12" role="img">`,
    `<title>${esc(title)}: ${esc(subtitle)}</title>`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="${GAP}" y="26" font-size="17" font-weight="700">${esc(title)}</text>`,
    `<text x="${GAP}" y="45" fill="#495057">${esc(subtitle)}</text>`,
    ...body,
    "</svg>",
    "",
  ].join("\n");
}
