/**
 * `--publish`: the generated block of `docs/benchmarks.md` (between the markers) and the plots it shows. What lies
 * outside the markers is written by hand and kept.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const BEGIN = "<!-- suite:begin -->";
const END = "<!-- suite:end -->";

/** Puts `block` between the markers of `text` (appending them when absent). */
export function replaceBlock(text: string, block: string): string {
  const wrapped = `${BEGIN}\n${block.trimEnd()}\n${END}`;
  const begin = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  if (begin < 0 || end < begin) return `${text.trimEnd()}\n\n${wrapped}\n`;
  return text.slice(0, begin) + wrapped + text.slice(end + END.length);
}

/** Writes `docsDir/benchmarks.md` and `docsDir/benchmarks/<name>` for each plot. */
export function publish(docsDir: string, block: string, plots: Record<string, string>): string[] {
  const file = join(docsDir, "benchmarks.md");
  const current = existsSync(file) ? readFileSync(file, "utf8") : "# Benchmarks\n";
  writeFileSync(file, replaceBlock(current, block));
  const plotDir = join(docsDir, "benchmarks");
  mkdirSync(plotDir, { recursive: true });
  for (const [name, svg] of Object.entries(plots)) writeFileSync(join(plotDir, name), svg);
  return [file, ...Object.keys(plots).map((n) => join(plotDir, n))];
}
