import { context, type Span, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectClient, eventually, startEngine, uniqueNamespace, useNatsServer } from "../harness/fixtures.js";

const nats = useNatsServer();
const exporter = new InMemorySpanExporter();

beforeAll(() => {
  // What an application with OpenTelemetry set up has: a tracer provider and a context manager, registered globally.
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
});
afterAll(() => {
  trace.disable();
  context.disable();
});

/** The parent span id of a finished span (sdk-trace-base 2 keeps the parent's context). */
function parentOf(span: ReadableSpan): string | undefined {
  const s = span as ReadableSpan & { parentSpanContext?: { spanId: string }; parentSpanId?: string };
  return s.parentSpanContext?.spanId ?? s.parentSpanId;
}

describe("tracing", () => {
  it("tracing - a task's spans join the trace of the span active where its run was triggered, children too", async () => {
    const { engine, tj } = await (async () => {
      const namespace = uniqueNamespace();
      return {
        engine: await startEngine(nats.url, { namespaces: [namespace], http: "127.0.0.1:0" }),
        tj: await connectClient(nats.url, { namespace }),
      };
    })();
    const tracer = trace.getTracer("tracing-test");
    const seen: { traceparent?: string | undefined; hasContext: boolean }[] = [];
    let parentRunId = "";
    const child = tj.task({
      name: "child",
      fn: async (_input, ctx) => {
        seen.push({ traceparent: ctx.traceparent(), hasContext: ctx.traceContext() !== undefined });
        tracer.startSpan("child-work").end();
        return {};
      },
    });
    const parent = tj.task({
      name: "parent",
      fn: async (_input, ctx) => {
        parentRunId = ctx.workflowRunId();
        seen.push({ traceparent: ctx.traceparent(), hasContext: ctx.traceContext() !== undefined });
        // Started with the run's trigger active (the worker activates it): no context passed by hand.
        await tracer.startActiveSpan("parent-work", async (span: Span) => {
          await child.run({});
          span.end();
        });
        // The context given explicitly, as for a callback that lost it.
        tracer.startSpan("explicit", {}, ctx.traceContext() as never).end();
        return {};
      },
    });
    const worker = await tj.worker("traced", { workflows: [parent, child], slots: 4 });
    await worker.start();

    let caller: { traceId: string; spanId: string } | undefined;
    await tracer.startActiveSpan("http-request", async (span: Span) => {
      caller = span.spanContext();
      await parent.run({});
      span.end();
    });
    const spans = await eventually(() => {
      const names = exporter.getFinishedSpans().map((s) => s.name);
      return ["http-request", "parent-work", "child-work", "explicit"].every((n) => names.includes(n))
        ? exporter.getFinishedSpans()
        : undefined;
    });
    const byName = (name: string) => spans.find((s) => s.name === name) as ReadableSpan;
    const traceId = caller?.traceId as string;
    // The parent task saw the caller's span as its trigger; its spans are in the caller's trace, under the caller.
    expect(seen[0]).toEqual({ traceparent: `00-${traceId}-${caller?.spanId}-01`, hasContext: true });
    expect(byName("parent-work").spanContext().traceId).toBe(traceId);
    expect(parentOf(byName("parent-work"))).toBe(caller?.spanId);
    expect(byName("explicit").spanContext().traceId).toBe(traceId);
    expect(parentOf(byName("explicit"))).toBe(caller?.spanId);
    // The child run was triggered inside "parent-work": its trigger is that span, its spans stay in the trace.
    expect(seen[1]?.traceparent).toBe(`00-${traceId}-${byName("parent-work").spanContext().spanId}-01`);
    expect(byName("child-work").spanContext().traceId).toBe(traceId);
    expect(parentOf(byName("child-work"))).toBe(byName("parent-work").spanContext().spanId);

    // Recorded in the run (RunCreated.traceparent), so it survives a crash, a retry, any worker.
    expect((await tj.runs.get(parentRunId)).traceparent).toBe(`00-${traceId}-${caller?.spanId}-01`);

    // No active span: nothing recorded, nothing exposed.
    seen.length = 0;
    await child.run({});
    expect(seen).toEqual([{ traceparent: undefined, hasContext: false }]);

    // Given explicitly (RunOptions.traceparent), and by a REST caller's W3C header.
    const given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    seen.length = 0;
    await child.run({}, { traceparent: given });
    expect(seen[0]?.traceparent).toBe(given);
    const { token } = await tj.apiTokens.create({ name: "trace" });
    const base = `http://${engine.httpAddress()}/api/v1/namespaces/${tj.namespace}`;
    const headerTrace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const posted = await eventually(async () => {
      const res = await fetch(`${base}/runs`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json", traceparent: headerTrace },
        body: JSON.stringify({ task: "child", input: {} }),
      });
      return res.status === 201 ? ((await res.json()) as { runId: string }) : undefined;
    });
    const state = await tj.ref(posted.runId).result();
    expect(state).toEqual({});
    expect((await tj.runs.get(posted.runId)).traceparent).toBe(headerTrace);

    await worker.stop();
    await tj.close();
    await engine.stop();
  });
});
