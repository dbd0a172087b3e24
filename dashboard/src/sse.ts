/** One server-sent event: its `event` name (default "message"), `data` lines joined by "\n", and `id`. */
export interface SseMessage {
  event: string;
  data: string;
  id?: string;
}

/**
 * Parses the complete messages at the start of `text` (the SSE wire format: `field: value` lines, a blank line ends a
 * message, `:` lines are comments); `rest` is the unfinished tail, to prepend to the next chunk.
 */
export function parseSse(text: string): { messages: SseMessage[]; rest: string } {
  const messages: SseMessage[] = [];
  const normalized = text.replace(/\r\n?/g, "\n");
  const end = normalized.lastIndexOf("\n\n");
  if (end < 0) return { messages, rest: normalized };
  for (const block of normalized.slice(0, end).split("\n\n")) {
    let event = "message";
    const data: string[] = [];
    let id: string | undefined;
    let fields = 0;
    for (const line of block.split("\n")) {
      if (line === "" || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      fields++;
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
      else if (field === "id") id = value;
    }
    if (fields > 0 && (data.length > 0 || event !== "message")) {
      messages.push({ event, data: data.join("\n"), ...(id === undefined ? {} : { id }) });
    }
  }
  return { messages, rest: normalized.slice(end + 2) };
}
