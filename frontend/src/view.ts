// DOM builders for the widget: messages, source cards, citations. Text always goes in as text nodes.
import type { CreatorInfo } from "./api";
import { decorateClaims } from "./claims";
import type { Source } from "./events";
import { formatTimestamp, sourceHref } from "./format";
import { renderMarkdown } from "./markdown";
import type { ChatMessage } from "./store";

type Attrs = Record<string, string | boolean | undefined>;

/** createElement with attributes and children; strings become text nodes, never markup. */
export function h(tag: string, attrs: Attrs = {}, ...children: (Node | string | null | undefined)[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    el.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return el;
}

export function cardId(messageId: string, index: number): string {
  return `lc-src-${messageId}-${index}`;
}

export function sourceCard(messageId: string, source: Source): HTMLElement {
  const href = sourceHref(source);
  const title = href
    ? h("a", { class: "title", href, target: "_blank", rel: "noopener noreferrer" }, source.title)
    : h("span", { class: "title" }, source.title);
  const meta = [source.creator];
  if (source.start_seconds !== null) {
    const end = source.end_seconds !== null ? `–${formatTimestamp(source.end_seconds)}` : "";
    meta.push(`${formatTimestamp(source.start_seconds)}${end}`);
  }
  return h(
    "li",
    {
      class: "card",
      id: cardId(messageId, source.index),
      "data-testid": "lorechat-source-card",
      "data-index": String(source.index),
      tabindex: "-1",
    },
    h("div", {}, h("span", { class: "num", "aria-label": `Source ${source.index}` }, String(source.index)), title),
    h("div", { class: "meta" }, meta.join(" · ")),
    h("p", { class: "snippet" }, source.snippet),
  );
}

export interface MessageActions {
  onCite: (messageId: string, index: number) => void;
  onRetry: (messageId: string) => void;
  /** The 👍/👎 row for a finished answer the service knows (feedback.ts), or null. */
  feedback?: (message: ChatMessage) => HTMLElement | null;
  /** The follow-up questions to offer under this answer (only the latest one's), or none. */
  suggestions?: (message: ChatMessage) => string[];
  /** Ask a question (a follow-up clicked). */
  onAsk?: (question: string) => void;
}

/** Sources come first, then the answer, then a status line (error + retry, or "stopped"). */
export function messageView(message: ChatMessage, actions: MessageActions): HTMLElement {
  if (message.role === "user") {
    return h("div", { class: "msg-user", "data-testid": "lorechat-message-user" }, message.content);
  }
  const root = h("div", {
    class: `msg-assistant ${message.status === "streaming" ? "streaming" : ""}`,
    "data-testid": "lorechat-message-assistant",
    "data-status": message.status,
    "data-message-id": message.id,
  });
  if (message.sources.length > 0) {
    const list = h("ol", { class: "sources", "aria-label": "Sources" });
    for (const source of message.sources) list.appendChild(sourceCard(message.id, source));
    root.appendChild(list);
  }
  if (message.tier === "curated" && message.status !== "streaming") {
    root.appendChild(h("p", { class: "curated", "data-testid": "lorechat-curated" }, "Answer written by a curator"));
  }
  const answer = h("div", { class: "answer", "data-testid": "lorechat-answer" });
  fillAnswer(answer, message, actions);
  root.appendChild(answer);
  const status = statusLine(message, actions);
  if (status) root.appendChild(status);
  const feedback = actions.feedback?.(message);
  if (feedback) root.appendChild(feedback);
  const followUps = actions.suggestions?.(message) ?? [];
  if (followUps.length > 0 && actions.onAsk) {
    root.appendChild(questionButtons(followUps, "Follow-up questions", "lorechat-suggestion", actions.onAsk));
  }
  return root;
}

export function fillAnswer(answer: HTMLElement, message: ChatMessage, actions: MessageActions): void {
  const known = new Set(message.sources.map((source) => source.index));
  const citation = (n: number): HTMLElement | null =>
    known.has(n)
      ? h(
          "button",
          {
            type: "button",
            class: "cite",
            "data-testid": "lorechat-citation",
            "data-index": String(n),
            "aria-label": `Source ${n}`,
            "aria-controls": cardId(message.id, n),
          },
          `[${n}]`,
        )
      : null;
  answer.replaceChildren(renderMarkdown(message.content, document, { citation }));
  answer.querySelectorAll<HTMLButtonElement>("button.cite").forEach((button) => {
    button.addEventListener("click", () => actions.onCite(message.id, Number(button.dataset.index)));
  });
  // The cards are the answer's siblings once the message is on screen: looked up when a [n] is hovered.
  const root = () => answer.getRootNode() as Document | ShadowRoot;
  decorateClaims(answer, message, (n) => root().getElementById?.(cardId(message.id, n)) ?? null);
}

function statusLine(message: ChatMessage, actions: MessageActions): HTMLElement | null {
  if (message.status === "error" || message.status === "interrupted") {
    const text =
      message.status === "error" ? message.error?.message ?? "Something went wrong." : "This answer was interrupted.";
    const retry = h("button", { type: "button", class: "icon-btn", "data-testid": "lorechat-retry" }, "Retry");
    retry.addEventListener("click", () => actions.onRetry(message.id));
    return h("div", { class: "error", role: "alert", "data-testid": "lorechat-error" }, h("span", {}, text), retry);
  }
  if (message.status === "stopped") return h("div", { class: "status" }, "Stopped.");
  return null;
}

/** "Ask [All creators | name…]": shown when the page did not fix a creator. */
export function creatorPicker(
  creators: CreatorInfo[],
  selected: string | null,
  onPick: (slug: string | null) => void,
): HTMLElement {
  const select = h("select", { id: "lc-creator", "data-testid": "lorechat-creator-picker" }) as HTMLSelectElement;
  select.appendChild(h("option", { value: "" }, "All creators"));
  for (const creator of creators) {
    select.appendChild(h("option", { value: creator.slug, selected: creator.slug === selected }, creator.name));
  }
  select.addEventListener("change", () => onPick(select.value || null));
  return h("label", { for: "lc-creator" }, "Ask", select);
}

/** 0 = plain facts, 1 = fully in the creator's voice. */
export function personalitySlider(weight: number, onChange: (weight: number) => void): HTMLElement {
  const valueText = (w: number) => `${Math.round(w * 100)}% personality`;
  const slider = h("input", {
    id: "lc-personality", type: "range", min: "0", max: "1", step: "0.1", value: String(weight),
    "data-testid": "lorechat-personality", "aria-valuetext": valueText(weight),
  }) as HTMLInputElement;
  slider.addEventListener("input", () => {
    slider.setAttribute("aria-valuetext", valueText(Number(slider.value)));
    onChange(Number(slider.value));
  });
  const hint = "How much the answer sounds like the creator";
  return h("label", { for: "lc-personality", title: hint }, "Personality", slider);
}

const SVG_OPEN = '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" ' +
  'stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" focusable="false">';

export const CHAT_ICON = `${SVG_OPEN}<path d="M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z"/></svg>`;
// Inline SVG, not emoji: an emoji glyph shows as an empty box where no emoji font is installed. The buttons
// carrying them have their own accessible names (aria-label); the icons are hidden from assistive technology.
export const THUMB_UP_ICON =
  `${SVG_OPEN}<path d="M7 10v11H4a1 1 0 0 1-1-1v-9a1 1 0 0 1 1-1h3z"/>` +
  '<path d="M7 10l4-8a3 3 0 0 1 3 3v4h5.5a2 2 0 0 1 2 2.3l-1.4 8A2 2 0 0 1 18.1 21H7"/></svg>';
export const THUMB_DOWN_ICON =
  `${SVG_OPEN}<path d="M17 14V3h3a1 1 0 0 1 1 1v9a1 1 0 0 1-1 1h-3z"/>` +
  '<path d="M17 14l-4 8a3 3 0 0 1-3-3v-4H4.5a2 2 0 0 1-2-2.3l1.4-8A2 2 0 0 1 5.9 3H17"/></svg>';
export const CLOSE_ICON = `${SVG_OPEN}<path d="M6 6l12 12M18 6L6 18"/></svg>`;

/** One of the constant, author-written SVGs above: parsed from a fixed string, never from data. */
export function icon(svg: string): Node {
  const template = document.createElement("template");
  template.innerHTML = svg;
  return template.content.cloneNode(true);
}

export function chatIcon(): Node {
  return icon(CHAT_ICON);
}

/** Question buttons (starters before the first question, follow-ups under an answer): one click asks it. */
export function questionButtons(
  questions: string[],
  label: string,
  testid: string,
  onAsk: (question: string) => void,
): HTMLElement {
  const list = h("ul", { class: "suggestions", role: "list", "aria-label": label });
  for (const question of questions) {
    const button = h("button", { type: "button", class: "suggestion", "data-testid": testid }, question);
    button.addEventListener("click", () => onAsk(question));
    list.appendChild(h("li", {}, button));
  }
  return list;
}
