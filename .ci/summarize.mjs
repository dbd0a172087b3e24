// Sums vitest's JSON reports (one per workspace package) into the closing line CI reads.
import { existsSync, readFileSync } from "node:fs";

const packages = ["schemas", "dashboard", "engine", "sdk", "cli", "test"];
let passed = 0;
let failed = 0;
let skipped = 0;
let reports = 0;
for (const pkg of packages) {
  const file = `${pkg}/.reports/vitest.json`;
  if (!existsSync(file)) continue;
  const report = JSON.parse(readFileSync(file, "utf8"));
  reports++;
  passed += report.numPassedTests;
  failed += report.numFailedTests;
  skipped += report.numPendingTests + (report.numTodoTests ?? 0);
  if (!report.success && report.numFailedTests === 0) failed += report.numFailedTestSuites || 1;
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
process.exit(reports === 0 || failed > 0 || passed === 0 ? 1 : 0);
