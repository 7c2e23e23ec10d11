// Starter questions before the first question, follow-ups under an answer, the curated badge and the rating icons,
// end to end in happy-dom against a scripted fetch.
import { beforeEach, describe, expect, it } from "vitest";
import "../src/index";

const calls: { url: string; body: unknown }[] = [];
let starters: string[] = [];
const DONE = {
  conversation_id: "conv-1", message_id: "srv-9", cascade_tier: "curated", finish_reason: "stop", search_query: "q",
  usage: { prompt_tokens: 0, completion_tokens: 4 }, curated_answer: { id: "ans-1", version: 2 },
  suggestions: ["When does the salt go in?", "What if I forget the salt?"],
};

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
  const all = (id: string) => [...el.shadowRoot!.querySelectorAll<HTMLElement>(`[data-testid="${id}"]`)];
  return { el, all };
}

beforeEach(() => {
  calls.length = 0;
  starters = ["How much salt?", "What hydration?"];
  localStorage.clear();
  document.body.replaceChildren();
  globalThis.fetch = (async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = String(input);
    calls.push({ url, body: init.body ? JSON.parse(String(init.body)) : null });
    if (url.endsWith("/api/v1/creators")) return Response.json([]);
    if (url.includes("/api/v1/starters")) return Response.json({ questions: starters, source: "curator" });
    return sse([["sources", []], ["token", { text: "A curator answered this: 2% salt." }], ["done", DONE]]);
  }) as typeof fetch;
});

describe("starter questions", () => {
  it("are offered as buttons before the first question, for the page's creator and site, and one click asks it", async () => {
    const { all } = mount({ api: "http://svc.test", creator: "ada", site: "blog", mode: "inline" });
    await until(() => all("lorechat-starter").length === 2);
    expect(calls.some((c) => c.url === "http://svc.test/api/v1/starters?creator=ada&site=blog")).toBe(true);
    const first = all("lorechat-starter")[0];
    expect(first.tagName).toBe("BUTTON"); // Tab reaches it, Enter and Space press it
    expect(first.closest("ul")!.getAttribute("aria-label")).toBe("Suggested questions");
    first.click();
    await until(() => calls.some((c) => c.url.endsWith("/chat")));
    expect((calls.find((c) => c.url.endsWith("/chat"))!.body as { query: string }).query).toBe("How much salt?");
    await until(() => all("lorechat-starter").length === 0); // gone once the conversation started
  });

  it("shows none when the service offers none", async () => {
    starters = [];
    const { all } = mount({ api: "", creator: "ada", mode: "inline" });
    await tick(60);
    expect(all("lorechat-starter")).toHaveLength(0);
  });
});

describe("after an answer", () => {
  it("offers the follow-ups under the latest answer only, marks a curated answer, and rates with SVG icons", async () => {
    starters = [];
    const { all } = mount({ api: "", creator: "ada", mode: "inline" });
    (all("lorechat-input")[0] as HTMLTextAreaElement).value = "Salt?";
    all("lorechat-send")[0].click();
    await until(() => all("lorechat-suggestion").length === 2);
    expect(all("lorechat-suggestion").map((b) => b.textContent)).toEqual(DONE.suggestions);
    expect(all("lorechat-curated")).toHaveLength(1);
    const up = all("lorechat-feedback-up")[0];
    expect(up.getAttribute("aria-label")).toBe("Helpful");
    expect(up.querySelector("svg")!.getAttribute("aria-hidden")).toBe("true");
    expect(up.textContent).toBe(""); // no emoji glyph to show as an empty box

    all("lorechat-suggestion")[1].click();
    await until(() => calls.filter((c) => c.url.endsWith("/chat")).length === 2);
    expect((calls.filter((c) => c.url.endsWith("/chat"))[1].body as { query: string }).query).toBe(
      "What if I forget the salt?",
    );
    await until(() => all("lorechat-message-assistant").length === 2 && all("lorechat-suggestion").length === 2);
    // The first answer's follow-ups went away: only the latest answer offers them.
    const first = all("lorechat-message-assistant")[0];
    expect(first.querySelectorAll('[data-testid="lorechat-suggestion"]')).toHaveLength(0);
  });
});
