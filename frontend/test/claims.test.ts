// The claim check in the answer: [n] shows its supporting quote in card n; unsupported sentences are marked.
import { describe, expect, it } from "vitest";
import { UNSUPPORTED_NOTE } from "../src/claims";
import type { Citation, Source } from "../src/events";
import type { ChatMessage } from "../src/store";
import { messageView } from "../src/view";

const TEXT = "I use two percent salt, by the weight of the flour. That is ten grams for a loaf.";
const SOURCE: Source = {
  index: 1, chunk_id: "c1", document_id: "d1", creator: "hazel", title: "Salt", url: null,
  snippet: "I use two percent salt…", score: 1, start_seconds: null, end_seconds: null, text: TEXT,
};
const CONTENT = "Here is what Hazel says: I use two percent salt. [1] She adds honey to every loaf. [1]";
const first = CONTENT.indexOf("I use");
const second = CONTENT.indexOf("She adds");
const CITATIONS: Citation[] = [
  { start: 0, end: first - 1, sources: [], quote: null, supported: true, score: 0, claim: false },
  { start: first, end: second - 1, sources: [1], quote: { source: 1, start: 0, end: 51 }, supported: true,
    score: 0.9, claim: true },
  { start: second, end: CONTENT.length, sources: [1], quote: { source: 1, start: 52, end: 81 }, supported: false,
    score: 0.2, claim: true },
];

function render(): HTMLElement {
  const message: ChatMessage = {
    id: "m1", role: "assistant", content: CONTENT, status: "done", sources: [SOURCE], citations: CITATIONS,
  };
  const view = messageView(message, { onCite: () => undefined, onRetry: () => undefined });
  document.body.replaceChildren(view);
  return view;
}

describe("claims in the answer", () => {
  it("focusing a [n] highlights the supporting quote in card n, and blurring restores the snippet", () => {
    const view = render();
    const [supported] = Array.from(view.querySelectorAll<HTMLButtonElement>("button.cite"));
    const card = view.querySelector<HTMLElement>("[data-testid=lorechat-source-card]") as HTMLElement;
    supported.dispatchEvent(new Event("focus"));
    const mark = card.querySelector("[data-testid=lorechat-quote]");
    expect(mark?.textContent).toBe("I use two percent salt, by the weight of the flour.");
    expect(card.classList.contains("quoting")).toBe(true);
    expect(supported.getAttribute("aria-label")).toBe("Source 1: I use two percent salt, by the weight of the flour.");
    supported.dispatchEvent(new Event("blur"));
    expect(card.querySelector("mark")).toBeNull();
    expect(card.querySelector(".snippet")?.textContent).toBe(SOURCE.snippet);
  });

  it("marks an unsupported sentence with a tooltip and a screen-reader note", () => {
    const view = render();
    const marked = Array.from(view.querySelectorAll<HTMLElement>("[data-testid=lorechat-unsupported]"));
    expect(marked.map((el) => el.textContent).join("")).toBe("She adds honey to every loaf.");
    expect(marked.every((el) => el.title === UNSUPPORTED_NOTE)).toBe(true);
    expect(marked[0].getAttribute("aria-description")).toBe(UNSUPPORTED_NOTE);
    expect(marked[0].tabIndex).toBe(0);
    expect(view.querySelector("[data-testid=lorechat-answer]")?.textContent).toBe(
      "Here is what Hazel says: I use two percent salt. [1] She adds honey to every loaf. [1]",
    );
    const buttons = view.querySelectorAll<HTMLButtonElement>("button.cite");
    expect(buttons[1].classList.contains("unsupported")).toBe(true);
    expect(buttons[1].getAttribute("aria-label")).toBe(`Source 1, ${UNSUPPORTED_NOTE}`);
    expect(buttons[0].classList.contains("unsupported")).toBe(false);
  });

  it("an answer without a claim check renders as before", () => {
    const message: ChatMessage = { id: "m2", role: "assistant", content: CONTENT, status: "done", sources: [SOURCE] };
    const view = messageView(message, { onCite: () => undefined, onRetry: () => undefined });
    expect(view.querySelector(".claim-unsupported")).toBeNull();
    expect(view.querySelectorAll("button.cite")).toHaveLength(2);
  });
});
