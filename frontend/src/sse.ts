// Server-sent events parser (WHATWG "event stream interpretation") that accepts chunks split anywhere.
import { type ChatEvent, isEventName } from "./events";

/** One raw SSE message, before its data is interpreted. */
export interface SseMessage {
  event: string;
  data: string;
  id: string;
}

export class SseProtocolError extends Error {}

/**
 * Incremental parser: feed decoded text with push(), get back every message completed so far.
 * A chunk may end anywhere: mid-line, between "\r" and "\n", mid-event. Comment lines (": keepalive")
 * are dropped. Several `data:` lines join with "\n", as the spec says.
 */
export class SseParser {
  private buffer = "";
  // A chunk that ended in "\r" may be followed by "\n" in the next one: that pair is one line break.
  private skipLeadingLf = false;
  private started = false;
  private eventType = "";
  private dataLines: string[] = [];
  private hasData = false;
  private lastId = "";

  push(chunk: string): SseMessage[] {
    if (!this.started && chunk.length > 0) {
      this.started = true;
      if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1);
    }
    if (this.skipLeadingLf && chunk.startsWith("\n")) chunk = chunk.slice(1);
    this.skipLeadingLf = false;
    this.buffer += chunk;
    const out: SseMessage[] = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const ch = this.buffer[i];
      if (ch !== "\n" && ch !== "\r") continue;
      const line = this.buffer.slice(start, i);
      if (ch === "\r") {
        if (i + 1 < this.buffer.length) {
          if (this.buffer[i + 1] === "\n") i++;
        } else {
          this.skipLeadingLf = true;
        }
      }
      start = i + 1;
      const message = this.line(line);
      if (message) out.push(message);
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  /** End of stream: an unterminated event is discarded, as the spec says. */
  finish(): SseMessage[] {
    this.buffer = "";
    this.reset();
    return [];
  }

  private line(line: string): SseMessage | null {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return null; // comment / keepalive
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "event":
        this.eventType = value;
        break;
      case "data":
        this.dataLines.push(value);
        this.hasData = true;
        break;
      case "id":
        if (!value.includes("\0")) this.lastId = value;
        break;
      default: // "retry" and unknown fields: nothing for a fetch-based reader to do
        break;
    }
    return null;
  }

  private dispatch(): SseMessage | null {
    if (!this.hasData) {
      this.eventType = "";
      return null;
    }
    const message = { event: this.eventType || "message", data: this.dataLines.join("\n"), id: this.lastId };
    this.reset();
    return message;
  }

  private reset(): void {
    this.eventType = "";
    this.dataLines = [];
    this.hasData = false;
  }
}

/** Interpret one raw message as a typed chat event; unknown event names give null (forward compatible). */
export function toChatEvent(message: SseMessage): ChatEvent | null {
  if (!isEventName(message.event)) return null;
  let data: unknown;
  try {
    data = JSON.parse(message.data);
  } catch {
    throw new SseProtocolError(`event "${message.event}" carried data that is not JSON`);
  }
  const isArray = Array.isArray(data);
  const isObject = typeof data === "object" && data !== null && !isArray;
  if (message.event === "sources" ? !isArray : !isObject) {
    throw new SseProtocolError(`event "${message.event}" carried data of the wrong shape`);
  }
  return { type: message.event, id: message.id, data } as ChatEvent;
}

/** Decode a byte stream (UTF-8, code points may straddle chunks) into typed chat events. */
export async function* readChatEvents(
  body: ReadableStream<Uint8Array>,
  signal?: AbortSignal,
): AsyncGenerator<ChatEvent, void, undefined> {
  const reader = body.getReader();
  // fetch() errors its body on abort; cancelling here too ends a pending read with any fetch implementation.
  const cancel = () => void reader.cancel().catch(() => undefined);
  signal?.addEventListener("abort", cancel, { once: true });
  const decoder = new TextDecoder("utf-8");
  const parser = new SseParser();
  try {
    for (;;) {
      if (signal?.aborted) return;
      const { done, value } = await reader.read();
      const text = done ? decoder.decode() : decoder.decode(value, { stream: true });
      for (const message of parser.push(text)) {
        const event = toChatEvent(message);
        if (event) yield event;
      }
      if (done) break;
    }
    parser.finish();
  } finally {
    signal?.removeEventListener("abort", cancel);
    // Cancel rather than just release: a consumer that stops early must close the connection.
    await reader.cancel().catch(() => undefined);
  }
}
