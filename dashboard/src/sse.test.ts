import { describe, expect, it } from "vitest";
import { parseSse } from "./sse.ts";

describe("parseSse", () => {
  it("sse - parses complete messages and keeps the unfinished tail", () => {
    const text =
      'retry: 2000\nevent: ready\ndata: {"ns":"a"}\n\n: keepalive\n\nevent: history\nid: 7\ndata: {"seq":7}\n\nevent: hist';
    const { messages, rest } = parseSse(text);
    expect(messages).toEqual([
      { event: "ready", data: '{"ns":"a"}' },
      { event: "history", data: '{"seq":7}', id: "7" },
    ]);
    expect(rest).toBe("event: hist");
    const next = parseSse(`${rest}ory\ndata: {"seq":8}\n\n`);
    expect(next.messages).toEqual([{ event: "history", data: '{"seq":8}' }]);
    expect(next.rest).toBe("");
  });

  it("sse - joins multi-line data, accepts CRLF, defaults the event name", () => {
    const { messages } = parseSse("data: a\r\ndata: b\r\n\r\n");
    expect(messages).toEqual([{ event: "message", data: "a\nb" }]);
  });
});
