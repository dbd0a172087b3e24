import { describe, expect, it } from "vitest";
import { decodeRunEnd } from "./run-state.js";

const bytes = (s: string) => new TextEncoder().encode(s);

describe("decodeRunEnd", () => {
  it("reads an engine's announcement and refuses anything else", () => {
    const end = { runId: "01R", workflowName: "w", status: "COMPLETED", lastSeq: 3, output: { a: 1 }, tasks: [] };
    expect(decodeRunEnd(bytes(JSON.stringify(end)))).toEqual(end);
    for (const other of ["not json", "null", "[]", "42", '{"runId":1,"status":"COMPLETED"}', '{"runId":"01R"}']) {
      expect(decodeRunEnd(bytes(other)), other).toBeUndefined();
    }
  });
});
