import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { expandEvent } from "@taskjet/schemas";
import { NonRetryableError } from "@taskjet/sdk";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import { connectClient, eventually, startEngine, uniqueNamespace, useNatsServer } from "../harness/fixtures.js";

/**
 * The dashboard end to end: a real engine (HTTP on a free port) over a real nats-server, real runs, and Debian's
 * headless Chromium driven by playwright-core. Screenshots go to test/.artifacts/dashboard/ (gitignored); with
 * TASKJET_DOCS_SCREENSHOTS=1 the main pages are also copied to docs/screenshots/ for the README.
 */

const CHROMIUM = process.env.TASKJET_CHROMIUM ?? "/usr/bin/chromium";
const here = dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = join(here, "..", ".artifacts", "dashboard");
const DOCS = join(here, "..", "..", "docs", "screenshots");

const nats = useNatsServer();

/** Polls until the assertion holds: generous, for a loaded CI machine (vitest's default gives up after 1 s). */
function poll<T>(fn: () => Promise<T> | T) {
  return expect.poll(fn, { timeout: 15_000, interval: 100 });
}

/** Saves a full-page screenshot as a test artifact, and for the README when asked. */
async function shoot(page: Page, name: string, docs = false): Promise<void> {
  const file = join(ARTIFACTS, `${name}.png`);
  // Toasts of earlier steps would cover the page.
  await page.screenshot({ path: file, fullPage: true, style: ".toasts { display: none; }" });
  if (docs && process.env.TASKJET_DOCS_SCREENSHOTS === "1") {
    await mkdir(DOCS, { recursive: true });
    await copyFile(file, join(DOCS, `${name}.png`));
  }
}

describe("dashboard", () => {
  it("dashboard - token sign-in, live runs list with counts, run timeline/DAG/logs, cancel, trigger, workers, queues", async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run installs it)`);
    }
    await mkdir(ARTIFACTS, { recursive: true });
    const namespace = uniqueNamespace("dash");
    const engine = await startEngine(nats.url, { namespaces: [namespace], http: "127.0.0.1:0" });
    const tj = await connectClient(nats.url, { namespace });
    const profile = await mkdtemp(join(tmpdir(), "tj-chromium-"));
    let context: BrowserContext | undefined;
    const worker = await (async () => {
      const greet = tj.task({
        name: "greet",
        fn: async (input: { name: string }, ctx) => {
          ctx.logger.info("greeting", { name: input.name });
          await ctx.putStream(`hello `);
          await ctx.putStream(`${input.name}\n`);
          return { greeting: `hello ${input.name}` };
        },
      });
      const charge = tj.task({
        name: "charge",
        retries: 1,
        backoff: { factor: 1, maxSeconds: 1 },
        fn: async (input: { card: string }, ctx) => {
          // Long words in a log line and an error: they wrap, the page does not widen.
          ctx.logger.warn(`charging ${"y".repeat(300)}`, { card: input.card, attempt: ctx.retryCount() });
          if (ctx.retryCount() === 0) throw new Error(`card ${input.card} declined`);
          throw new NonRetryableError(`card ${input.card} blocked ${"z".repeat(400)}`);
        },
      });
      const slow = tj.task({
        name: "slow",
        fn: async (_input: Record<string, never>, ctx) => {
          ctx.logger.info("waiting to be cancelled");
          await new Promise<void>((resolve) => {
            if (ctx.abortController.signal.aborted) resolve();
            ctx.abortController.signal.addEventListener("abort", () => resolve(), { once: true });
          });
          return { stopped: true };
        },
      });
      // One at a time, and metered: the rest wait in the queue with a reason (CONCURRENCY) the dashboard shows.
      await tj.ratelimits.upsert({ key: "partner-api", limit: 100, duration: "MINUTE" });
      const throttled = tj.task({
        name: "throttled",
        concurrency: { expression: "'global'", maxRuns: 1 },
        rateLimits: [{ staticKey: "partner-api", units: 1 }],
        fn: async (_input: { n: number }, ctx) => {
          await new Promise<void>((resolve) => {
            if (ctx.abortController.signal.aborted) resolve();
            ctx.abortController.signal.addEventListener("abort", () => resolve(), { once: true });
          });
          return {};
        },
      });
      const wf = tj.workflow<{ url: string }>({ name: "ingest" });
      const fetchPage = wf.task({
        name: "fetch",
        fn: async (input: { url: string }, ctx) => {
          ctx.logger.info("fetching", { url: input.url });
          return { html: `<a href="/x">${input.url}</a>` };
        },
      });
      const parse = wf.task({ name: "parse", parents: [fetchPage], fn: async () => ({ words: 3 }) });
      const links = wf.task({ name: "links", parents: [fetchPage], fn: async () => ({ links: ["/x"] }) });
      wf.task({ name: "store", parents: [parse, links], fn: async () => ({ stored: true }) });
      const w = await tj.worker("dash-worker", {
        workflows: [greet, charge, slow, throttled, wf],
        slots: 8,
        labels: { region: "eu-west", memory: 512 },
      });
      await w.start();
      await greet.run({ name: "ada" }, { additionalMetadata: { team: "core" } });
      await greet.run({ name: "grace" });
      await expect(charge.run({ card: "4242" })).rejects.toThrow(/blocked/);
      await wf.run({ url: "https://example.com" });
      const running = await slow.runNoWait({});
      await eventually(async () => ((await running.status()) === "RUNNING" ? true : undefined), 10_000, "slow running");
      await greet.schedule(new Date(Date.now() + 3_600_000), { name: "later" });
      await greet.cron("nightly-greet", "0 3 * * *", { name: "night" }, { timezone: "UTC" });
      return { w, running, greet, throttled };
    })();

    try {
      const { token } = await tj.apiTokens.create({ name: "dashboard" });
      const base = `http://${engine.httpAddress()}`;
      // The engine follows the token bucket: wait until it knows the token, and the list shows every run.
      await eventually(
        async () => {
          const res = await fetch(`${base}/api/v1/namespaces/${namespace}/runs?counts=true&limit=50`, {
            headers: { authorization: `Bearer ${token}` },
          });
          if (res.status !== 200) return undefined;
          const body = (await res.json()) as { counts?: Record<string, number> };
          const c = body.counts ?? {};
          return c.COMPLETED === 3 && c.FAILED === 1 && c.RUNNING === 1 && c.SCHEDULED === 1 ? true : undefined;
        },
        15_000,
        "runs listed with counts",
      );

      context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-quic",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
        ],
        viewport: { width: 1400, height: 900 },
      });
      context.setDefaultTimeout(10_000);
      const page = context.pages()[0] ?? (await context.newPage());
      const pageErrors: string[] = [];
      page.on("pageerror", (err) => pageErrors.push(err.message));

      // The page loads without a token; the data waits behind it.
      await page.goto(`${base}/`);
      expect(page.url()).toBe(`${base}/dashboard/`);
      await page.getByLabel("API token").fill("tjt_not-a-token");
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByText("Unknown or revoked token.").waitFor();
      // Refused at sign-in is not a session that expired.
      expect(await page.getByText(/sign in again/).count()).toBe(0);
      await page.getByLabel("API token").fill(token);
      await page.getByRole("button", { name: "Sign in" }).click();
      await poll(() => page.getByTestId("namespace").textContent()).toBe(namespace);
      await page.locator(".live.on").waitFor();

      // Runs, with counts per status.
      const runsTable = page.getByTestId("runs-table");
      await runsTable.locator("tbody tr[data-run-id]").nth(5).waitFor();
      await poll(() => page.locator('[data-count="COMPLETED"]').textContent()).toBe("3");
      await poll(() => page.locator('[data-count="FAILED"]').textContent()).toBe("1");
      await poll(() => page.locator('[data-count="RUNNING"]').textContent()).toBe("1");
      await shoot(page, "runs", true);

      // Filter by FAILED: only the failed charge.
      await page.locator('.status-chips [data-status="FAILED"]').click();
      await poll(() => page.url()).toContain("status=FAILED");
      await poll(() => runsTable.locator("tbody tr[data-run-id]").count()).toBe(1);
      await expect(runsTable.locator("tbody tr[data-run-id]").first().getAttribute("data-status")).resolves.toBe(
        "FAILED",
      );
      await shoot(page, "runs-failed");

      // The failed run: error with its stack, a timeline with two attempts and the backoff between them.
      await runsTable.locator("tbody tr[data-run-id] a").first().click();
      await page.getByTestId("run-page").waitFor();
      await poll(() => page.getByTestId("run-error").textContent()).toContain("blocked");
      expect(await page.locator(".error-box .stack").textContent()).toContain("at ");
      expect(await page.evaluate<number>("document.documentElement.scrollWidth")).toBeLessThanOrEqual(1400);
      await poll(() => page.locator('[data-testid="timeline"] .bar[data-kind="running"]').count()).toBe(2);
      expect(await page.locator('[data-testid="timeline"] .bar[data-kind="backoff"]').count()).toBe(1);
      await page.getByRole("tab", { name: /Logs/ }).click();
      await poll(() => page.getByTestId("logs").locator("tr").count()).toBe(2);
      expect(await page.evaluate<number>("document.documentElement.scrollWidth")).toBeLessThanOrEqual(1400);
      await shoot(page, "run-failed", true);

      // The workflow run: DAG of four tasks, their timeline, logs and history.
      await page.getByRole("link", { name: "Runs" }).click();
      await page.getByLabel("Task").fill("ingest");
      await page.getByRole("button", { name: "Apply" }).click();
      await poll(() => runsTable.locator("tbody tr[data-run-id]").count()).toBe(1);
      await runsTable.locator("tbody tr[data-run-id] a").first().click();
      await page.getByTestId("dag").waitFor();
      expect(await page.locator('[data-testid="dag"] .node').count()).toBe(4);
      expect(await page.locator('[data-testid="dag"] .node.s-completed').count()).toBe(4);
      expect(await page.locator('[data-testid="dag"] path.edge').count()).toBe(4);
      expect(await page.locator('[data-testid="timeline"] .gantt-row[data-task-run]').count()).toBe(4);
      await page.getByRole("tab", { name: /Logs/ }).click();
      await poll(() => page.getByTestId("logs").textContent()).toContain("fetching");
      await shoot(page, "run-workflow", true);
      await page.getByRole("tab", { name: /History/ }).click();
      await poll(() => page.getByTestId("history").textContent()).toContain("RunCreated");
      // Replay from one task (confirmed): new attempts in the same history, live.
      await page.getByRole("button", { name: "Replay…" }).click();
      const replay = page.getByTestId("confirm-dialog");
      await replay.getByLabel("Re-run").selectOption("parse");
      await replay.getByRole("button", { name: "Replay", exact: true }).click();
      await poll(() => page.getByTestId("history").textContent()).toContain("RunReplayed");
      await poll(() => page.getByTestId("run-page").getAttribute("data-run-status")).toBe("COMPLETED");
      await poll(() => page.locator(".facts").textContent()).toContain("Replays1");
      await shoot(page, "run-replayed");

      // A greet run: its stream chunks.
      await page.goto(`${base}/dashboard/#/runs?task=greet&status=COMPLETED`);
      await runsTable.locator("tbody tr[data-run-id] a").first().click();
      await page.getByRole("tab", { name: /Stream/ }).click();
      await poll(() => page.getByTestId("chunks").textContent()).toMatch(/hello (ada|grace)/);

      // Cancel the running run: confirm, then CANCELLED arrives live (no reload).
      await page.goto(`${base}/dashboard/#/runs/${worker.running.runId}`);
      await poll(() => page.getByTestId("run-page").getAttribute("data-run-status")).toBe("RUNNING");
      await page.getByRole("button", { name: "Cancel run…" }).click();
      const dialog = page.getByTestId("confirm-dialog");
      await dialog.waitFor();
      await shoot(page, "cancel-confirm");
      await dialog.getByLabel(/Reason/).fill("stopped from the browser test");
      await dialog.getByRole("button", { name: "Cancel run" }).click();
      await poll(() => page.getByTestId("run-page").getAttribute("data-run-status")).toBe("CANCELLED");
      expect((await worker.running.status()) as string).toBe("CANCELLED");

      // Trigger with JSON input: bad JSON is refused in the page, good JSON makes a run that shows up live.
      await page.goto(`${base}/dashboard/#/runs`);
      await page.getByRole("button", { name: "Trigger a run…" }).click();
      const trigger = page.getByTestId("trigger-dialog");
      await trigger.getByLabel("Task", { exact: true }).fill("greet");
      await trigger.getByLabel("Input (JSON object)").fill('{ "name": ');
      await trigger.getByRole("button", { name: "Review…" }).click();
      await poll(() => trigger.getByTestId("trigger-errors").textContent()).toContain("not valid JSON");
      await trigger.getByLabel("Input (JSON object)").fill("[1, 2]");
      await trigger.getByRole("button", { name: "Review…" }).click();
      await poll(() => trigger.getByTestId("trigger-errors").textContent()).toContain("must be a JSON object");
      await trigger.getByLabel("Input (JSON object)").fill('{ "name": "browser" }');
      await trigger.getByRole("button", { name: "Review…" }).click();
      await poll(() => trigger.textContent()).toContain("Trigger this run?");
      await shoot(page, "trigger-confirm");
      await trigger.getByRole("button", { name: "Trigger", exact: true }).click();
      const toast = page.locator(".toast", { hasText: "Triggered greet" });
      await toast.waitFor();
      const newRunId = /run (\S+)$/.exec((await toast.textContent()) ?? "")?.[1] as string;
      expect(newRunId).toBeTruthy();
      await runsTable.locator(`tr[data-run-id="${newRunId}"][data-status="COMPLETED"]`).waitFor();
      await poll(() => page.locator('[data-count="COMPLETED"]').textContent()).toBe("4");
      expect(await tj.runs.get(newRunId)).toMatchObject({ status: "COMPLETED", input: { name: "browser" } });
      // A run started elsewhere (the SDK) shows up too, and moves to COMPLETED, with no click.
      const fromSdk = await worker.greet.runNoWait({ name: "sdk" });
      await runsTable.locator(`tr[data-run-id="${fromSdk.runId}"][data-status="COMPLETED"]`).waitFor();

      // Work held back by a concurrency limit: the run page says why it waits, and follows a cancel made elsewhere.
      const held = await worker.throttled.runNoWait([{ n: 1 }, { n: 2 }, { n: 3 }]);
      // The scheduler records why the head of the held-back queue waits (the second run; the third queues behind it).
      const last = held[1]?.runId as string;
      await page.goto(`${base}/dashboard/#/runs/${last}`);
      await poll(() => page.getByTestId("wait-reasons").textContent()).toContain("concurrency-limited");
      await shoot(page, "run-waiting");

      // Workers and queues.
      await page.getByRole("link", { name: "Workers" }).click();
      const workerRow = page.locator('[data-testid="workers-table"] tr[data-worker="dash-worker"]');
      await workerRow.waitFor();
      expect(await workerRow.textContent()).toContain("region=eu-west");
      expect(await workerRow.textContent()).toMatch(/\d+\/8/);
      await shoot(page, "workers", true);
      await page.getByRole("link", { name: "Queues" }).click();
      const queueRow = page.locator('[data-testid="queues-table"] tr[data-task="throttled"]');
      await poll(() => queueRow.locator("td").nth(1).textContent()).toBe("2");
      expect(await queueRow.textContent()).toContain("CONCURRENCY");
      await poll(() => page.getByTestId("concurrency-table").textContent()).toContain("throttled");
      await poll(() => page.getByTestId("ratelimits-table").textContent()).toContain("partner-api");
      await shoot(page, "queues", true);

      // Cancelled through the SDK while its page is open: the page follows the log.
      await page.goto(`${base}/dashboard/#/runs/${last}`);
      await poll(() => page.getByTestId("run-page").getAttribute("data-run-status")).toBe("QUEUED");
      await tj.runs.cancel({ ids: held.map((r) => r.runId), reason: "test over" });
      await poll(() => page.getByTestId("run-page").getAttribute("data-run-status")).toBe("CANCELLED");
      await page.getByRole("link", { name: "Crons & scheduled" }).click();
      await page.locator('[data-testid="crons-table"] td', { hasText: "nightly-greet" }).waitFor();
      await page.locator('[data-testid="scheduled-table"] tr[data-run-id]').first().waitFor();
      await shoot(page, "schedules", true);

      expect(pageErrors).toEqual([]);
    } finally {
      await context?.close().catch(() => undefined);
      // Whatever a failed assertion left running would hold the worker's stop for its grace period.
      await tj.runs
        .cancel({ filters: { statuses: ["QUEUED", "RUNNING"] }, reason: "test over" })
        .catch(() => undefined);
      await rm(profile, { recursive: true, force: true }).catch(() => undefined);
      await worker.w.stop();
      await tj.close();
      await engine.stop();
    }
  }, 90_000);
  it("dashboard - the page is served with a strict CSP; its event stream and chunks need the token and follow the log", async () => {
    const namespace = uniqueNamespace("dash");
    const engine = await startEngine(nats.url, { namespaces: [namespace], http: "127.0.0.1:0" });
    const tj = await connectClient(nats.url, { namespace });
    const base = `http://${engine.httpAddress()}`;
    const abort = new AbortController();
    const speak = tj.task({
      name: "speak",
      fn: async (input: { words: string[] }, ctx) => {
        for (const w of input.words) await ctx.putStream(`${w} `);
        return { n: input.words.length };
      },
    });
    const worker = await tj.worker("w", { workflows: [speak] });
    await worker.start();
    try {
      // The page: no token needed; hashed assets cached for good, the page itself revalidated.
      const root = await fetch(`${base}/`, { redirect: "manual" });
      expect(root.status).toBe(302);
      expect(root.headers.get("location")).toBe("/dashboard/");
      const html = await fetch(`${base}/dashboard/`);
      expect(html.status).toBe(200);
      expect(html.headers.get("content-type")).toContain("text/html");
      expect(html.headers.get("cache-control")).toBe("no-cache");
      expect(html.headers.get("content-security-policy")).toContain("script-src 'self'");
      const body = await html.text();
      const script = /src="\.\/(assets\/[^"]+\.js)"/.exec(body)?.[1] as string;
      expect(script).toBeTruthy();
      const js = await fetch(`${base}/dashboard/${script}`);
      expect(js.status).toBe(200);
      expect(js.headers.get("content-type")).toContain("javascript");
      expect(js.headers.get("cache-control")).toContain("immutable");
      expect((await fetch(`${base}/dashboard/assets/nope.js`)).status).toBe(404);

      // Data behind the token.
      const stream = `${base}/api/v1/namespaces/${namespace}/events/stream`;
      expect((await fetch(stream)).status).toBe(401);
      const { token } = await tj.apiTokens.create({ name: "board" });
      const auth = { authorization: `Bearer ${token}` };
      await eventually(async () =>
        (await fetch(`${base}/api/v1/dashboard/session`, { headers: auth })).ok ? true : undefined,
      );
      expect(await (await fetch(`${base}/api/v1/dashboard/session`, { headers: auth })).json()).toEqual({
        namespace,
        tokenName: "board",
      });
      expect((await fetch(`${base}/api/v1/namespaces/other/events/stream`, { headers: auth })).status).toBe(403);

      // The stream: ready, then one compact message per event appended from then on, in log order.
      const res = await fetch(stream, { headers: auth, signal: abort.signal });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toContain("text/event-stream");
      const reader = (res.body as ReadableStream<Uint8Array>).pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      const readUntil = async (done: (t: string) => boolean) => {
        while (!done(text)) {
          const r = await reader.read();
          if (r.done) return false;
          text += r.value;
        }
        return true;
      };
      expect(await readUntil((t) => t.includes("event: ready"))).toBe(true);
      const ref = await speak.runNoWait({ words: ["one", "two", "three"] });
      await ref.result();
      await readUntil((t) => t.includes('"type":"TaskCompleted"'));
      const events = [...text.matchAll(/event: history\nid: (\d+)\ndata: (.*)\n\n/g)].map((m) => ({
        id: Number(m[1]),
        ...(JSON.parse(m[2] as string) as { runId: string; type: string; seq: number; taskRunId?: string }),
      }));
      // Exactly the stored events: the run's start alone (TaskStarted) or, for a short attempt, carried by its result.
      const stored: { seq: number; type: string }[] = [];
      const facts: string[] = [];
      for await (const e of tj.runs.history(ref.runId)) {
        stored.push({ seq: e.seq, type: e.event?.type ?? "rejected" });
        for (const f of e.event ? expandEvent(e.event) : []) facts.push(f.type);
      }
      expect(events.map((e) => ({ seq: e.seq, type: e.type }))).toEqual(stored);
      expect(facts).toEqual(["RunCreated", "TaskStarted", "TaskCompleted"]);
      for (const e of events) {
        expect(e).toMatchObject({ runId: ref.runId, seq: e.id });
        expect(Object.keys(e).sort()).toEqual(
          e.type === "RunCreated" ? ["id", "runId", "seq", "type"] : ["id", "runId", "seq", "taskRunId", "type"],
        );
      }
      expect(events.map((e) => e.seq)).toEqual([...events.map((e) => e.seq)].sort((a, b) => a - b));

      // Chunks, paged by sequence.
      const chunks = `${base}/api/v1/namespaces/${namespace}/runs/${ref.runId}/chunks`;
      const all = (await (await fetch(chunks, { headers: auth })).json()) as {
        chunks: { text: string; index: number; attempt: number; seq: number }[];
        lastSeq: number;
      };
      expect(all.chunks.map((c) => [c.text, c.index, c.attempt])).toEqual([
        ["one ", 0, 0],
        ["two ", 1, 0],
        ["three ", 2, 0],
      ]);
      const first = (await (await fetch(`${chunks}?limit=2`, { headers: auth })).json()) as typeof all;
      expect(first.chunks).toHaveLength(2);
      const rest = (await (await fetch(`${chunks}?after=${first.lastSeq}`, { headers: auth })).json()) as typeof all;
      expect(rest.chunks.map((c) => c.text)).toEqual(["three "]);
      expect((await fetch(`${chunks}?after=-1`, { headers: auth })).status).toBe(400);

      // A revoked token's open stream ends at its next message.
      await tj.apiTokens.revoke("board");
      await eventually(async () =>
        (await fetch(`${base}/api/v1/dashboard/session`, { headers: auth })).status === 401 ? true : undefined,
      );
      await speak.run({ words: [] });
      expect(await readUntil(() => false)).toBe(false);
    } finally {
      abort.abort();
      await worker.stop();
      await tj.close();
      await engine.stop();
    }
  });
});
