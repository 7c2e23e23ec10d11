// One turn against a scripted fetch: a stream that breaks mid-answer is resumed where it broke (Last-Event-ID).
import { beforeEach, describe, expect, it } from "vitest";
import type { ChatMessage } from "../src/store";
import { runTurn, type TurnHooks, type TurnStart } from "../src/turn";

const DONE = { conversation_id: "conv-1", message_id: "m1", cascade_tier: "local", finish_reason: "stop",
  search_query: "q", usage: { prompt_tokens: 1, completion_tokens: 2 } };
const REQUEST = { query: "Why?", creator: null, conversation_id: null, personality_weight: 0 };
// Short waits: the tests check the order of attempts, not the real backoff.
const DELAYS = [5, 10, 20];

function frame(id: number, name: string, data: unknown): string {
  return `id: ${id}\nevent: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
}

// The whole answer as the service frames it; a stream "from" an id carries the frames after it.
const FRAMES = [
  frame(1, "sources", []),
  frame(2, "token", { text: "One" }),
  frame(3, "token", { text: " two" }),
  frame(4, "token", { text: " three." }),
  frame(5, "done", DONE),
];

/** Frames, then the end: a clean close, a half-sent frame and a close, or a network error. */
function sse(frames: readonly string[], end: "close" | "cut" | "fail" = "close"): Response {
  const encoder = new TextEncoder();
  const parts = end === "cut" ? [...frames, "id: 9\nevent: tok"] : [...frames];
  // One part per read: an error must come after the parts were read (erroring a stream drops its queue).
  const body = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        const part = parts.shift();
        if (part !== undefined) controller.enqueue(encoder.encode(part));
        else if (end === "fail") controller.error(new TypeError("network error"));
        else controller.close();
      },
    },
    { highWaterMark: 0 },
  );
  return new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream", "X-Conversation-Id": "conv-1" } });
}

function refusal(status: number, code: string, retryable: boolean, headers: Record<string, string> = {}): Response {
  return Response.json({ code, message: "no", retryable }, { status, headers });
}

type Handler = (url: string, init: RequestInit) => Response | Promise<Response>;
const calls: { url: string; lastEventId: string | null }[] = [];
let handlers: Handler[];

beforeEach(() => {
  calls.length = 0;
  globalThis.fetch = (async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = String(input);
    calls.push({ url, lastEventId: new Headers(init.headers).get("Last-Event-ID") });
    const next = handlers.shift();
    if (!next) throw new TypeError("network error"); // the service is gone
    return next(url, init);
  }) as typeof fetch;
});

function streaming(): ChatMessage {
  return { id: "a1", role: "assistant", content: "", status: "streaming", sources: [] };
}

async function turn(message: ChatMessage, start: TurnStart = { request: REQUEST }, signal = new AbortController().signal) {
  const seen: string[] = [];
  const hooks: TurnHooks = {
    onConversationId: (id) => seen.push(id),
    onSources: () => undefined,
    onText: () => undefined,
    stopping: () => false,
  };
  const outcome = await runTurn({ api: "http://svc.test", start, signal, message, hooks, resumeDelays: DELAYS });
  return { outcome, seen };
}

describe("runTurn resumes a broken stream", () => {
  it.each(["fail", "cut", "close"] as const)("continues the same message after a %s, nothing twice", async (end) => {
    handlers = [() => sse(FRAMES.slice(0, 3), end), () => sse(FRAMES.slice(3))];
    const message = streaming();
    const { outcome } = await turn(message);
    expect(outcome).toEqual({ rateLimited: false });
    expect(message.status).toBe("done");
    expect(message.content).toBe("One two three.");
    expect(message.conversationId).toBe("conv-1"); // kept with the message: what a reload resumes
    expect(calls).toEqual([
      { url: "http://svc.test/api/v1/chat", lastEventId: null },
      { url: "http://svc.test/api/v1/conversations/conv-1/stream", lastEventId: "3" },
    ]);
  });

  it("tries again after a network failure and a 503, from the last event read", async () => {
    handlers = [
      () => sse(FRAMES.slice(0, 2), "fail"),
      () => Promise.reject(new TypeError("network error")),
      () => refusal(503, "stream_log_unavailable", true, { "Retry-After": "0" }),
      () => sse(FRAMES.slice(2, 3), "fail"),
      () => sse(FRAMES.slice(3)),
    ];
    const message = streaming();
    await turn(message);
    expect(message.status).toBe("done");
    expect(message.content).toBe("One two three.");
    expect(calls.slice(1).map((c) => c.lastEventId)).toEqual(["2", "2", "2", "3"]);
  });

  it.each([
    [404, "not_found"],
    [409, "resume_unavailable"],
  ])("ends with connection_lost when the resume is refused (%i)", async (status, code) => {
    handlers = [() => sse(FRAMES.slice(0, 3), "fail"), () => refusal(status, code, false)];
    const message = streaming();
    await turn(message);
    expect(calls.length).toBe(2); // no second try
    expect(message.status).toBe("error");
    expect(message.error).toEqual({ code: "connection_lost", message: expect.any(String), retryable: true });
    expect(message.content).toBe("One two");
  });

  it("gives up with connection_lost once every attempt failed", async () => {
    handlers = [() => sse(FRAMES.slice(0, 2), "close")];
    const message = streaming();
    await turn(message);
    expect(calls.length).toBe(1 + DELAYS.length);
    expect(message.status).toBe("error");
    expect(message.error?.code).toBe("connection_lost");
  });

  it("shows an error the replay ends with", async () => {
    const interrupted = { code: "upstream_interrupted", message: "The answer could not finish.", retryable: true };
    handlers = [() => sse(FRAMES.slice(0, 3), "fail"), () => sse([frame(4, "error", interrupted)])];
    const message = streaming();
    await turn(message);
    expect(message.status).toBe("error");
    expect(message.error).toEqual(interrupted);
    expect(message.content).toBe("One two");
  });

  it("does not resume a question the service refused, nor a stream the visitor stopped", async () => {
    handlers = [() => refusal(429, "too_many_streams", true, { "Retry-After": "7" })];
    expect((await turn(streaming())).outcome).toEqual({ rateLimited: true, retryAfter: 7 });
    expect(calls.length).toBe(1);

    calls.length = 0;
    const controller = new AbortController();
    const hang: Handler = (_url, init) =>
      new Promise((_resolve, reject) => init.signal!.addEventListener("abort", () => reject(new DOMException("", "AbortError"))));
    handlers = [() => sse(FRAMES.slice(0, 2), "close"), hang];
    const message = streaming();
    const done = turn(message, { request: REQUEST }, controller.signal);
    for (let i = 0; i < 100 && calls.length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 5));
    controller.abort(); // the visitor stops while the resume is under way
    await done;
    expect(message.status).toBe("stopped");
    expect(message.content).toBe("One");
    expect(calls.length).toBe(2);
  });
});

describe("runTurn replays a reloaded answer", () => {
  it("refills the message from the first event, without Last-Event-ID", async () => {
    handlers = [() => sse(FRAMES.slice(0, 3), "fail"), () => sse(FRAMES.slice(3))];
    const message = { ...streaming(), content: "One", sources: [], conversationId: "conv-1" };
    await turn(message, { resume: "conv-1" });
    expect(message.status).toBe("done");
    expect(message.content).toBe("One two three.");
    expect(calls).toEqual([
      { url: "http://svc.test/api/v1/conversations/conv-1/stream", lastEventId: null },
      { url: "http://svc.test/api/v1/conversations/conv-1/stream", lastEventId: "3" },
    ]);
  });

  it("marks the message interrupted when the replay is refused, keeping what it had", async () => {
    handlers = [() => refusal(404, "not_found", false)];
    const message = { ...streaming(), content: "One", conversationId: "conv-1" };
    await turn(message, { resume: "conv-1" });
    expect(message.status).toBe("interrupted");
    expect(message.error).toBeUndefined();
    expect(message.content).toBe("One");
  });
});
