import { createHash } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { jsonTooDeep, MAX_JSON_DEPTH } from "@taskjet/schemas";
import type { JsonObject, RunOptions, Taskjet } from "@taskjet/sdk";
import { SingleBar } from "cli-progress";
import { UsageError } from "../errors.js";
import { jsonLine } from "../output.js";
import type { CliContext } from "./common.js";

/** Largest bulk file read (it is read whole, and Node strings stop at about 512 MiB). */
export const MAX_BULK_FILE_BYTES = 256 * 1024 * 1024;

/** Bad lines a refused bulk file names; the rest are counted. */
const MAX_BAD_LINES_NAMED = 20;

/** Runs sent per call: large enough to pipeline, small enough for a lively progress bar. */
const CHUNK = 2000;

/** One input per non-empty line of a JSON Lines file, with its line number. */
export async function readBulkFile(path: string): Promise<{ line: number; text: string; input: JsonObject }[]> {
  let content: string;
  try {
    // Checked first: a device, a pipe or a huge file would hang or fill memory.
    const info = await stat(path);
    if (!info.isFile()) throw new UsageError(`--bulk: ${path} is not a regular file`);
    if (info.size > MAX_BULK_FILE_BYTES) {
      throw new UsageError(
        `--bulk: ${path} is ${info.size} bytes, over the ${MAX_BULK_FILE_BYTES / 1024 / 1024} MiB a bulk file may be: split it`,
      );
    }
    content = await readFile(path, "utf8");
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`--bulk: cannot read ${path}: ${(err as Error).message}`);
  }
  const rows: { line: number; text: string; input: JsonObject }[] = [];
  // Every bad line is named (up to MAX_BAD_LINES_NAMED of them), so one pass fixes the file.
  const bad: string[] = [];
  for (const [i, raw] of content.split("\n").entries()) {
    const text = raw.trim();
    if (text === "") continue;
    let input: unknown;
    try {
      input = JSON.parse(text);
    } catch (err) {
      // The parser quotes the line: control characters in it would reach the terminal as escape sequences.
      const why = (err as Error).message.replace(
        /\p{Cc}/gu,
        (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
      );
      bad.push(`line ${i + 1}: not JSON (${why})`);
      continue;
    }
    if (typeof input !== "object" || input === null || Array.isArray(input)) {
      bad.push(`line ${i + 1}: must be a JSON object (the run's input), got ${JSON.stringify(text.slice(0, 40))}`);
      continue;
    }
    if (jsonTooDeep(input)) {
      bad.push(`line ${i + 1}: nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels`);
      continue;
    }
    rows.push({ line: i + 1, text, input: input as JsonObject });
  }
  if (bad.length > 0) {
    const named = bad.slice(0, MAX_BAD_LINES_NAMED);
    const more = bad.length > named.length ? [`and ${bad.length - named.length} more bad lines`] : [];
    throw new UsageError(
      `--bulk ${path}: ${bad.length} bad line${bad.length === 1 ? "" : "s"}, nothing sent\n  ${[...named, ...more].join("\n  ")}`,
    );
  }
  return rows;
}

/**
 * The run id of one line: derived from the task, the batch id and the line, so sending the same file again (after an
 * interruption, or twice) creates no run twice.
 */
export function bulkRunId(task: string, batch: string, line: number, text: string): string {
  const digest = createHash("sha256").update(`${task}\n${batch}\n${line}\n${text}`).digest("base64url");
  return `b${digest.slice(0, 31)}`; // base64url: letters, digits, - and _, a valid run id
}

/** Triggers one run per line of `path`, with a progress bar on a terminal. Returns how many were sent. */
export async function triggerBulk(
  tj: Taskjet,
  ctx: CliContext,
  task: string,
  path: string,
  options: { batch: string; json: boolean; runOptions: Omit<RunOptions, "runId"> },
): Promise<{ sent: number; failed: number }> {
  const rows = await readBulkFile(path);
  const bar = ctx.io.interactive
    ? new SingleBar({ format: "{bar} {value}/{total} runs  {eta_formatted} left", hideCursor: true })
    : undefined;
  bar?.start(rows.length, 0);
  let failed = 0;
  try {
    for (let i = 0; i < rows.length; i += CHUNK) {
      const chunk = rows.slice(i, i + CHUNK);
      const refs = await tj.runManyNoWait(
        task,
        chunk.map((r) => ({
          input: r.input,
          options: { ...options.runOptions, runId: bulkRunId(task, options.batch, r.line, r.text) },
        })),
        { returnExceptions: true },
      );
      for (const [k, ref] of refs.entries()) {
        const row = chunk[k] as (typeof chunk)[number];
        if (ref instanceof Error) {
          failed++;
          bar?.stop();
          // The SDK names an item by its index in the call (`[3].input`): the line says which.
          ctx.io.err(`line ${row.line}: ${ref.message.replace(/^\[\d+\]\.?/, "")}\n`);
          bar?.start(rows.length, i + k);
        } else if (options.json) ctx.io.out(jsonLine({ line: row.line, runId: ref.runId }));
      }
      bar?.update(i + chunk.length);
    }
  } finally {
    bar?.stop();
  }
  return { sent: rows.length - failed, failed };
}
