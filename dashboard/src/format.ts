/** Display helpers: times, durations, ids. */

/** "4.2 s", "3 min 5 s", "2 h 10 min", "3 d 4 h". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return "–";
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  // Whole seconds from 10 s on, rounded first: 59.6 s is "1 min", never "60 s" or "1 min 60 s".
  const s = ms < 10_000 ? ms / 1000 : Math.round(ms / 1000);
  if (s < 60) return `${s < 10 ? s.toFixed(1) : s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min${s % 60 ? ` ${s % 60} s` : ""}`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h${m % 60 ? ` ${m % 60} min` : ""}`;
  const d = Math.floor(h / 24);
  return `${d} d${h % 24 ? ` ${h % 24} h` : ""}`;
}

/** "5 s ago", "in 3 min", from an ISO time. */
export function formatAgo(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "–";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "–";
  const d = now - t;
  if (Math.abs(d) < 1000) return "now";
  return d >= 0 ? `${formatDuration(d)} ago` : `in ${formatDuration(-d)}`;
}

/** Local date and time with seconds, "2026-11-28 14:03:22". */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) return "–";
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return "–";
  const p = (n: number) => String(n).padStart(2, "0");
  return `${t.getFullYear()}-${p(t.getMonth() + 1)}-${p(t.getDate())} ${p(t.getHours())}:${p(t.getMinutes())}:${p(t.getSeconds())}`;
}

/** The first characters of a long id, enough to tell runs apart on screen. */
export function shortId(id: string, n = 10): string {
  return id.length > n + 1 ? `${id.slice(0, n)}…` : id;
}

/** Pretty JSON, or the value as text when it does not serialize. */
export function toJson(value: unknown): string {
  try {
    return JSON.stringify(value, null, 2) ?? "undefined";
  } catch {
    return String(value);
  }
}

/** A `datetime-local` input's value as ISO, or undefined when empty or invalid. */
export function localToIso(value: string): string | undefined {
  if (!value) return undefined;
  const t = new Date(value);
  return Number.isNaN(t.getTime()) ? undefined : t.toISOString();
}

/** An ISO time as a `datetime-local` input's value. */
export function isoToLocal(iso: string | undefined): string {
  if (!iso) return "";
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return "";
  const p = (n: number) => String(n).padStart(2, "0");
  return `${t.getFullYear()}-${p(t.getMonth() + 1)}-${p(t.getDate())}T${p(t.getHours())}:${p(t.getMinutes())}`;
}

/** What a JSON text field holds: the object, or why it is not one (with the line and column of a syntax error). */
export function parseJsonObject(text: string, field: string): { value: Record<string, unknown> } | { error: string } {
  if (text.trim() === "") return { value: {} };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    const pos = /position (\d+)/.exec(message);
    if (pos) {
      const before = text.slice(0, Number(pos[1]));
      const line = before.split("\n").length;
      const col = before.length - before.lastIndexOf("\n");
      return { error: `${field}: not valid JSON at line ${line}, column ${col}: ${message}` };
    }
    return { error: `${field}: not valid JSON: ${message}` };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return {
      error: `${field}: must be a JSON object ({ ... }), got ${Array.isArray(value) ? "an array" : typeof value}`,
    };
  }
  return { value: value as Record<string, unknown> };
}
