// 👍/👎 under finished answers, and the `site` attribute, end to end in happy-dom against a scripted fetch.
import { beforeEach, describe, expect, it } from "vitest";
import "../src/index";

const calls: { url: string; body: unknown }[] = [];
let feedbackStatus = 200;
const DONE = { conversation_id: "conv-1", message_id: "srv-7", cascade_tier: "local", finish_reason: "stop",
  search_query: "q", usage: { prompt_tokens: 1, completion_tokens: 2 } };

function sse(frames: [string, unknown][]): Response {
  const text = frames.map(([name, data], i) => `id: ${i + 1}\nevent: ${name}\ndata: ${JSON.stringify(data)}\n\n`).join("");
  return new Response(text, { status: 200, headers: { "Content-Type": "text/event-stream" } });
}

const tick = (ms = 30) => new Promise((resolve) => setTimeout(resolve, ms));
async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !check(); i++) await tick(10);
  expect(check()).toBe(true);
}

function mount(attrs: Record<string, string>) {
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

let answer: () => Response;

beforeEach(() => {
  calls.length = 0;
  feedbackStatus = 200;
  localStorage.clear();
  document.body.replaceChildren();
  answer = () => sse([["sources", []], ["token", { text: "Fold it thrice." }], ["done", DONE]]);
  globalThis.fetch = (async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = String(input);
    calls.push({ url, body: init.body ? JSON.parse(String(init.body)) : null });
    if (url.endsWith("/api/v1/creators")) return Response.json([]);
    if (url.endsWith("/feedback")) {
      return feedbackStatus === 200
        ? Response.json({ message_id: "srv-7", rating: "down", comment: null, updated_at: "2026-01-01T00:00:00Z" })
        : Response.json({ error: "Rate limit exceeded", retry_after: 9 }, { status: 429 });
    }
    return answer();
  }) as typeof fetch;
});

describe("feedback under an answer", () => {
  it("rates a finished answer, then sends a comment, and keeps the rating across a reload", async () => {
    const { $, el } = mount({ api: "http://svc.test", creator: "ada", mode: "inline" });
    await ask($, "How to fold?");
    await until(() => $("lorechat-feedback-down") !== null);
    const down = $("lorechat-feedback-down") as HTMLButtonElement;
    expect(down.tagName).toBe("BUTTON"); // focusable and pressable from the keyboard (Enter / Space)
    expect(down.getAttribute("aria-label")).toBe("Not helpful");
    expect(down.closest('[role="group"]')!.getAttribute("aria-label")).toBe("Rate this answer");
    down.click();
    await until(() => $("lorechat-feedback-comment") !== null);
    expect(calls.at(-1)).toEqual({ url: "http://svc.test/api/v1/messages/srv-7/feedback", body: { rating: "down" } });
    expect(down.getAttribute("aria-pressed")).toBe("true");
    expect($("lorechat-feedback-up")!.getAttribute("aria-pressed")).toBe("false");
    expect($("lorechat-feedback-note")!.textContent).toBe("Thanks for the feedback.");

    ($("lorechat-feedback-comment") as HTMLTextAreaElement).value = "  It skipped the rest step. ";
    $("lorechat-feedback-send")!.click();
    await until(() => calls.length > 0 && (calls.at(-1)!.body as { comment?: string }).comment !== undefined);
    expect(calls.at(-1)!.body).toEqual({ rating: "down", comment: "It skipped the rest step." });

    el.remove();
    const again = mount({ api: "http://svc.test", creator: "ada", mode: "inline" });
    await until(() => again.$("lorechat-feedback-down") !== null);
    expect(again.$("lorechat-feedback-down")!.getAttribute("aria-pressed")).toBe("true");
  });

  it("shows why the service refused, and offers no rating for a failed answer", async () => {
    feedbackStatus = 429;
    const { $ } = mount({ api: "", creator: "ada", mode: "inline" });
    await ask($, "How to fold?");
    await until(() => $("lorechat-feedback-up") !== null);
    $("lorechat-feedback-up")!.click();
    await until(() => $("lorechat-feedback-note")!.textContent !== "");
    expect($("lorechat-feedback-note")!.textContent).toBe("Rate limit exceeded");
    expect($("lorechat-feedback-up")!.getAttribute("aria-pressed")).toBe("false");
    expect($("lorechat-feedback-comment")).toBeNull();

    answer = () => sse([["sources", []], ["error", { code: "all_tiers_failed", message: "No model.", retryable: true }]]);
    await ask($, "Again?");
    await until(() => $("lorechat-error") !== null);
    const messages = document.querySelector("lorechat-widget")!.shadowRoot!.querySelectorAll(
      '[data-testid="lorechat-message-assistant"]',
    );
    expect(messages[messages.length - 1].querySelector('[data-testid="lorechat-feedback-up"]')).toBeNull();
  });

  it("names its site in every question when the page sets one", async () => {
    const { $ } = mount({ api: "", creator: "ada", mode: "inline", site: "bakery-blog" });
    await ask($, "Hi?");
    await until(() => calls.some((c) => c.url.endsWith("/chat")));
    expect((calls.find((c) => c.url.endsWith("/chat"))!.body as { site: string }).site).toBe("bakery-blog");
  });
});
