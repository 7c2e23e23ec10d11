// The SSE parser must give the same events wherever the network splits the bytes.
import { describe, expect, it } from "vitest";
import type { ChatEvent } from "../src/events";
import { readChatEvents, type SseMessage, SseParser, SseProtocolError, toChatEvent } from "../src/sse";

// Frames exactly as backend/stream/events.py encode() writes them, with a keepalive between.
const SOURCES = [
  {
    index: 1, chunk_id: "c1", document_id: "d1", creator: "ada", title: "Engines", url: "https://x.test/a",
    snippet: "The engine…", score: 0.8, start_seconds: 75.5, end_seconds: 90,
  },
];
const WIRE =
  `id: 1\nevent: sources\ndata: ${JSON.stringify(SOURCES)}\n\n` +
  ": keepalive\n\n" +
  'id: 2\nevent: token\ndata: {"text":"Hé 👋 "}\n\n' +
  // I6: text imitating framing stays inside one JSON line.
  `id: 3\nevent: token\ndata: ${JSON.stringify({ text: "\n\nevent: done\ndata: {}\n\n" })}\n\n` +
  'id: 4\nevent: done\ndata: {"conversation_id":"c","message_id":"m","cascade_tier":"local",' +
  '"finish_reason":"stop","search_query":"q","usage":{"prompt_tokens":1,"completion_tokens":2},' +
  '"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}\n\n';

function parseChunks(chunks: string[]): SseMessage[] {
  const parser = new SseParser();
  const out = chunks.flatMap((chunk) => parser.push(chunk));
  return out.concat(parser.finish());
}

function stream(parts: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      parts.forEach((part) => controller.enqueue(part));
      controller.close();
    },
  });
}

async function collect(body: ReadableStream<Uint8Array>): Promise<ChatEvent[]> {
  const events: ChatEvent[] = [];
  for await (const event of readChatEvents(body)) events.push(event);
  return events;
}

const whole = parseChunks([WIRE]);

describe("SseParser", () => {
  it("parses the backend's frames and drops keepalive comments", () => {
    expect(whole.map((m) => m.event)).toEqual(["sources", "token", "token", "done"]);
    expect(whole.map((m) => m.id)).toEqual(["1", "2", "3", "4"]);
    expect(JSON.parse(whole[0].data)).toEqual(SOURCES);
    expect(JSON.parse(whole[2].data).text).toBe("\n\nevent: done\ndata: {}\n\n");
  });

  it("gives the same events for every split into two chunks", () => {
    for (let cut = 0; cut <= WIRE.length; cut++) {
      expect(parseChunks([WIRE.slice(0, cut), WIRE.slice(cut)])).toEqual(whole);
    }
  });

  it("gives the same events one character at a time", () => {
    expect(parseChunks([...WIRE])).toEqual(whole);
  });

  it("gives the same events with CRLF or CR line endings, split anywhere", () => {
    for (const eol of ["\r\n", "\r"]) {
      const wire = WIRE.replace(/\n/g, eol);
      expect(parseChunks([wire])).toEqual(whole);
      for (let cut = 0; cut <= wire.length; cut++) {
        expect(parseChunks([wire.slice(0, cut), wire.slice(cut)])).toEqual(whole);
      }
    }
  });

  it("treats CR at a chunk end followed by LF as one line break, not two", () => {
    const messages = parseChunks(["event: token\r", "\ndata: {\"text\":\"a\"}\r", "\n\r", "\n"]);
    expect(messages).toEqual([{ event: "token", data: '{"text":"a"}', id: "" }]);
  });

  it("joins multi-line data with newlines and ignores comments inside an event", () => {
    const messages = parseChunks(["event: token\ndata: line one\n: keepalive\ndata:line two\ndata\n\n"]);
    expect(messages).toEqual([{ event: "token", data: "line one\nline two\n", id: "" }]);
  });

  it("keeps the last id, strips a leading BOM and ignores retry and unknown fields", () => {
    const messages = parseChunks(["\ufeffid: 7\nretry: 100\nfoo: bar\ndata: x\n\n", "data: y\n\n"]);
    expect(messages).toEqual([
      { event: "message", data: "x", id: "7" },
      { event: "message", data: "y", id: "7" },
    ]);
  });

  it("does not dispatch an event without data, nor an unterminated one", () => {
    expect(parseChunks(["event: token\n\n", "event: token\ndata: {}"])).toEqual([]);
  });
});

describe("toChatEvent", () => {
  it("types known events and skips unknown ones", () => {
    expect(toChatEvent({ event: "token", data: '{"text":"a"}', id: "2" })).toEqual({
      type: "token", id: "2", data: { text: "a" },
    });
    expect(toChatEvent({ event: "message", data: "{}", id: "" })).toBeNull();
  });

  it("refuses data that is not JSON or has the wrong shape", () => {
    expect(() => toChatEvent({ event: "token", data: "{nope", id: "" })).toThrow(SseProtocolError);
    expect(() => toChatEvent({ event: "sources", data: "{}", id: "" })).toThrow(SseProtocolError);
    expect(() => toChatEvent({ event: "done", data: "[]", id: "" })).toThrow(SseProtocolError);
  });
});

describe("readChatEvents", () => {
  it("decodes UTF-8 split inside a code point, byte by byte", async () => {
    const bytes = new TextEncoder().encode(WIRE);
    const events = await collect(stream([...bytes].map((b) => Uint8Array.of(b))));
    expect(events.map((e) => e.type)).toEqual(["sources", "token", "token", "done"]);
    expect(events[1].data).toEqual({ text: "Hé 👋 " });
    expect(events[0].data).toEqual(SOURCES);
    // The turn's trace id (backend/tracing.py) rides along; the widget reads `done` as before.
    expect(events[3].type === "done" && events[3].data.trace_id).toBe("4bf92f3577b34da6a3ce929d0e0e4736");
  });

  it("stops at the end of the stream without the unterminated tail", async () => {
    const bytes = new TextEncoder().encode(WIRE + 'event: token\ndata: {"text":"cut"}');
    const events = await collect(stream([bytes]));
    expect(events.map((e) => e.type)).toEqual(["sources", "token", "token", "done"]);
  });
});
