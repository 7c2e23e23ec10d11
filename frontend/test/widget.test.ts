// The element end to end in happy-dom, against a scripted fetch that speaks the service's wire format.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import "../src/index";

type Handler = (url: string, init: RequestInit) => Response | Promise<Response>;
const calls: { url: string; body: unknown }[] = [];
let handler: Handler;

const SOURCES = [
  { index: 1, chunk_id: "c1", document_id: "d1", creator: "ada", title: "Talk", url: "https://v.test/talk",
    snippet: "snip", score: 1, start_seconds: 75, end_seconds: 80 },
  { index: 2, chunk_id: "c2", document_id: "d2", creator: "ada", title: "Essay", url: null,
    snippet: "snap", score: 0.5, start_seconds: null, end_seconds: null },
];
const DONE = { conversation_id: "conv-1", message_id: "m1", cascade_tier: "local", finish_reason: "stop",
  search_query: "q", usage: { prompt_tokens: 1, completion_tokens: 2 } };

function frame(id: number, name: string, data: unknown): string {
  return `id: ${id}\nevent: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** A streaming response; `gate` holds the stream open after the given frames until it resolves. */
function sse(frames: string[], gate?: Promise<void>, headers: Record<string, string> = {}): Response {
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      for (const f of frames) controller.enqueue(encoder.encode(f));
      if (gate) await gate;
      controller.close();
    },
  });
  return new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream", ...headers } });
}

const tick = (ms = 30) => new Promise((resolve) => setTimeout(resolve, ms));
async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !check(); i++) await tick(10);
  expect(check()).toBe(true);
}

function mount(attrs: Record<string, string>): { el: HTMLElement; $: (id: string) => HTMLElement | null } {
  const el = document.createElement("lorechat-widget");
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  document.body.appendChild(el);
  const $ = (id: string) => el.shadowRoot!.querySelector<HTMLElement>(`[data-testid="${id}"]`);
  return { el, $ };
}

async function ask($: (id: string) => HTMLElement | null, text: string): Promise<void> {
  ($("lorechat-input") as HTMLTextAreaElement).value = text;
  $("lorechat-send")!.click();
  await tick();
}

beforeEach(() => {
  calls.length = 0;
  localStorage.clear();
  document.body.replaceChildren();
  globalThis.fetch = (async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = String(input);
    calls.push({ url, body: init.body ? JSON.parse(String(init.body)) : null });
    if (url.endsWith("/api/v1/creators")) {
      return Response.json([{ slug: "ada", name: "Ada", bio: "", documents: 2, chunks: 9 }]);
    }
    return handler(url, init);
  }) as typeof fetch;
});
afterEach(() => document.body.replaceChildren());

describe("<lorechat-widget>", () => {
  it("streams sources before the answer, links citations and survives a reload", async () => {
    handler = () => sse([frame(1, "sources", SOURCES), ": keepalive\n\n", frame(2, "token", { text: "Engines **run** [1]." }),
      frame(3, "done", DONE)]);
    const { $, el } = mount({ api: "http://svc.test", creator: "ada", mode: "inline", personality: "on" });
    await ask($, "How do engines run?");
    await until(() => el.shadowRoot!.querySelector('[data-status="done"]') !== null);
    expect(calls.find((c) => c.url.endsWith("/chat"))).toEqual({ url: "http://svc.test/api/v1/chat", body: {
      query: "How do engines run?", creator: "ada", conversation_id: null, personality_weight: 0.5 } });
    const message = el.shadowRoot!.querySelector('[data-testid="lorechat-message-assistant"]')!;
    const cards = message.querySelectorAll('[data-testid="lorechat-source-card"]');
    expect(cards.length).toBe(2);
    expect(message.firstElementChild!.contains(cards[0])).toBe(true); // cards come before the answer
    expect(cards[0].querySelector("a")!.getAttribute("href")).toBe("https://v.test/talk#t=75");
    expect(cards[0].textContent).toContain("1:15");
    expect(cards[1].querySelector("a")).toBeNull();
    expect($("lorechat-answer")!.querySelector("strong")!.textContent).toBe("run");
    $("lorechat-citation")!.click();
    expect(cards[0].classList.contains("highlight")).toBe(true);
    expect($("lorechat-personality")).not.toBeNull();
    expect($("lorechat-creator-picker")).toBeNull();
    expect(el.shadowRoot!.querySelector("h2")!.textContent).toBe("Ask Ada"); // the name, not the slug

    const again = mount({ api: "http://svc.test", creator: "ada", mode: "inline" });
    expect(again.$("lorechat-answer")!.textContent).toBe("Engines run [1].");
    handler = () => sse([frame(1, "sources", []), frame(2, "done", DONE)]);
    await ask(again.$, "And then?");
    const followUp = calls.at(-1)!.body as { conversation_id: string; personality_weight: number };
    expect(followUp.conversation_id).toBe("conv-1");
    expect(followUp.personality_weight).toBe(0); // no slider and no weight on this page: neutral voice
  });

  it("sends an explicit personality-weight even without the slider", async () => {
    handler = () => sse([frame(1, "sources", []), frame(2, "done", DONE)]);
    const { $, el } = mount({ api: "", creator: "ada", mode: "inline", "personality-weight": "0.8" });
    await ask($, "Voice?");
    await until(() => el.shadowRoot!.querySelector('[data-status="done"]') !== null);
    expect((calls.at(-1)!.body as { personality_weight: number }).personality_weight).toBe(0.8);
    expect($("lorechat-personality")).toBeNull();
  });

  it("shows a stream error with a retry that re-sends the question", async () => {
    handler = () => sse([frame(1, "sources", []), frame(2, "token", { text: "Par" }),
      frame(3, "error", { code: "upstream_interrupted", message: "The model dropped.", retryable: true })]);
    const { $ } = mount({ api: "", mode: "inline" });
    await ask($, "Why?");
    await until(() => $("lorechat-error") !== null);
    expect($("lorechat-error")!.textContent).toContain("The model dropped.");
    handler = () => sse([frame(1, "sources", []), frame(2, "token", { text: "Fine." }), frame(3, "done", DONE)]);
    $("lorechat-retry")!.click();
    await until(() => $("lorechat-answer")?.textContent === "Fine.");
    const chats = calls.filter((c) => c.url.endsWith("/chat"));
    expect(chats.map((c) => (c.body as { query: string }).query)).toEqual(["Why?", "Why?"]);
    expect($("lorechat-error")).toBeNull();
    expect($("lorechat-creator-picker")).not.toBeNull(); // no creator attribute: picker from /creators
  });

  it("says how long to wait on 429 and keeps the question", async () => {
    handler = () => Response.json({ error: "Rate limit exceeded", retry_after: 42 }, { status: 429, headers: { "Retry-After": "42" } });
    const { $ } = mount({ api: "", creator: "ada", mode: "inline" });
    await ask($, "Too fast?");
    await until(() => !$("lorechat-rate-limit")!.hidden);
    expect($("lorechat-rate-limit")!.textContent).toContain("42 s");
    expect(($("lorechat-input") as HTMLTextAreaElement).value).toBe("Too fast?");
    expect(($("lorechat-send") as HTMLButtonElement).disabled).toBe(true);
  });

  it("stop calls the stop endpoint with the id from X-Conversation-Id and aborts", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    handler = (url) =>
      url.endsWith("/stop")
        ? new Response(null, { status: 204 })
        : sse([frame(1, "sources", []), frame(2, "token", { text: "Long" })], gate, { "X-Conversation-Id": "conv-9" });
    const { $, el } = mount({ api: "", creator: "ada", mode: "inline" });
    await ask($, "Talk a lot");
    await until(() => !$("lorechat-stop")!.hidden);
    $("lorechat-stop")!.click();
    await until(() => el.shadowRoot!.querySelector('[data-status="stopped"]') !== null);
    release();
    expect(calls.some((c) => c.url === "/api/v1/conversations/conv-9/stop")).toBe(true);
    expect($("lorechat-answer")!.textContent).toBe("Long");
    expect($("lorechat-stop")!.hidden).toBe(true);
  });

  it("after a reload mid-answer, replays the answer's stream into its message as a live turn", async () => {
    localStorage.setItem("lorechat:v1:http://svc.test|ada", JSON.stringify({ conversationId: "conv-1", creator: "ada",
      messages: [{ id: "q1", role: "user", content: "Why?", status: "done", sources: [] },
        { id: "a1", role: "assistant", content: "Half", status: "streaming", sources: [], conversationId: "conv-1" }] }));
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    handler = () => sse([frame(1, "sources", SOURCES), frame(2, "token", { text: "Half" })], gate);
    const { $, el } = mount({ api: "http://svc.test", creator: "ada", mode: "inline" });
    await until(() => $("lorechat-source-card") !== null);
    expect(calls.find((c) => !c.url.endsWith("/creators"))!.url).toBe("http://svc.test/api/v1/conversations/conv-1/stream");
    await until(() => $("lorechat-answer")?.textContent === "Half"); // refilled, not "HalfHalf"
    expect($("lorechat-message-assistant")!.dataset.status).toBe("streaming");
    expect($("lorechat-stop")!.hidden).toBe(false);

    handler = () => sse([frame(3, "token", { text: " and whole." }), frame(4, "done", DONE)]);
    release(); // the replay breaks off here: the widget resumes after event 2
    await until(() => el.shadowRoot!.querySelector('[data-status="done"]') !== null);
    expect($("lorechat-answer")!.textContent).toBe("Half and whole.");
    expect(el.shadowRoot!.querySelectorAll('[data-testid="lorechat-source-card"]').length).toBe(2);
    expect($("lorechat-stop")!.hidden).toBe(true);
    const saved = JSON.parse(localStorage.getItem("lorechat:v1:http://svc.test|ada")!);
    expect(saved.messages[1]).toMatchObject({ status: "done", content: "Half and whole." });
  });

  it("marks a reloaded answer interrupted when its stream is not kept", async () => {
    localStorage.setItem("lorechat:v1:|ada", JSON.stringify({ conversationId: "conv-1", creator: "ada",
      messages: [{ id: "q1", role: "user", content: "Why?", status: "done", sources: [] },
        { id: "a1", role: "assistant", content: "Half", status: "streaming", sources: [], conversationId: "conv-1" }] }));
    handler = () => Response.json({ code: "not_found", message: "No stream", retryable: false }, { status: 404 });
    const { $, el } = mount({ api: "", creator: "ada", mode: "inline" });
    await until(() => el.shadowRoot!.querySelector('[data-status="interrupted"]') !== null);
    expect($("lorechat-answer")!.textContent).toBe("Half");
    expect($("lorechat-stop")!.hidden).toBe(true);
    expect(calls.filter((c) => c.url.endsWith("/stream")).length).toBe(1);
  });

  it("launcher opens, focuses the input and closes on Escape", async () => {
    const { $, el } = mount({ api: "", creator: "ada" });
    const panel = el.shadowRoot!.querySelector<HTMLElement>(".panel")!;
    expect(panel.hidden).toBe(true);
    $("lorechat-launcher")!.click();
    expect(panel.hidden).toBe(false);
    expect(el.shadowRoot!.activeElement).toBe($("lorechat-input"));
    $("lorechat-input")!.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true, composed: true }));
    expect(panel.hidden).toBe(true);
    expect($("lorechat-launcher")!.getAttribute("aria-expanded")).toBe("false");
  });
});
