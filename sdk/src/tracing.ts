import { createRequire } from "node:module";
import { TRACEPARENT } from "@taskjet/schemas";

/**
 * W3C trace context across a run, with OpenTelemetry when the application has it: `@opentelemetry/api` is an optional
 * peer dependency, loaded on first use and never required. Without it, or without an active span, nothing is recorded
 * and nothing is activated.
 */

/** A trace context as carried by a run: the W3C `traceparent` and `tracestate` header values. */
export interface TraceHeaders {
  traceparent: string;
  tracestate?: string | undefined;
}

/**
 * An OpenTelemetry `Context` (structurally: the SDK does not depend on `@opentelemetry/api`), to pass to
 * `tracer.startSpan(name, options, ctx.traceContext())` or `context.with(...)`.
 */
export interface TraceContext {
  getValue(key: symbol): unknown;
  setValue(key: symbol, value: unknown): TraceContext;
  deleteValue(key: symbol): TraceContext;
}

/** The part of `@opentelemetry/api` used here. */
interface OtelApi {
  context: { active(): TraceContext; with<T>(ctx: TraceContext, fn: () => T): T };
  trace: {
    getSpanContext(ctx: TraceContext): OtelSpanContext | undefined;
    setSpanContext(ctx: TraceContext, spanContext: OtelSpanContext): TraceContext;
  };
  isSpanContextValid(spanContext: OtelSpanContext): boolean;
  createTraceState?(raw?: string): unknown;
  ROOT_CONTEXT: TraceContext;
}

interface OtelSpanContext {
  traceId: string;
  spanId: string;
  traceFlags: number;
  isRemote?: boolean;
  traceState?: { serialize(): string };
}

let api: OtelApi | null | undefined;

/** `@opentelemetry/api` as the application resolves it, or null when it is not installed. */
function otel(): OtelApi | null {
  if (api !== undefined) return api;
  try {
    // A synchronous require: triggers stay synchronous until their append. The API keeps its state on globalThis,
    // so this copy sees the provider and context manager the application registered through its own import.
    api = createRequire(import.meta.url)("@opentelemetry/api") as OtelApi;
  } catch {
    api = null;
  }
  return api;
}

/** The trace context of the caller's active OpenTelemetry span, if there is one. */
export function activeTraceHeaders(): TraceHeaders | undefined {
  const o = otel();
  if (!o) return undefined;
  const sc = o.trace.getSpanContext(o.context.active());
  if (!sc || !o.isSpanContextValid(sc)) return undefined;
  const traceparent = `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, "0")}`;
  const tracestate = sc.traceState?.serialize();
  return tracestate ? { traceparent, tracestate } : { traceparent };
}

/** A valid `traceparent`'s parts, or undefined for anything else (a run's value is checked before use). */
export function parseTraceparent(value: unknown): { traceId: string; spanId: string; flags: number } | undefined {
  if (typeof value !== "string" || !TRACEPARENT.test(value)) return undefined;
  const [, traceId, spanId, flags] = value.split("-") as [string, string, string, string];
  return { traceId, spanId, flags: Number.parseInt(flags, 16) };
}

/**
 * An OpenTelemetry context whose parent span is the remote one `headers` names, or undefined when OpenTelemetry is
 * not installed or the headers do not parse.
 */
export function contextFromHeaders(headers: Partial<TraceHeaders> | undefined): TraceContext | undefined {
  const o = otel();
  const parsed = parseTraceparent(headers?.traceparent);
  if (!o || !parsed) return undefined;
  const spanContext: OtelSpanContext = {
    traceId: parsed.traceId,
    spanId: parsed.spanId,
    traceFlags: parsed.flags & 0xff,
    isRemote: true,
  };
  if (headers?.tracestate && o.createTraceState) {
    spanContext.traceState = o.createTraceState(headers.tracestate) as OtelSpanContext["traceState"];
  }
  return o.trace.setSpanContext(o.ROOT_CONTEXT, spanContext);
}

/** Runs `fn` with `ctx` active (so spans it starts are children of the run's trigger), or plainly without one. */
export function withTraceContext<T>(ctx: TraceContext | undefined, fn: () => T): T {
  const o = otel();
  return ctx && o ? o.context.with(ctx, fn) : fn();
}
