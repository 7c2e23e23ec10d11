// The claim check in the answer (issue 12): hovering or focusing a [n] shows, inside source card n, the quote
// that supports its sentence; a sentence the check could not support is marked, with a tooltip, a tab stop
// and an aria-description (its [n] buttons say it in their labels too). Data comes from `done.citations` (offsets into the answer) and `Source.text`.
import type { Citation, Source } from "./events";

export const UNSUPPORTED_NOTE = "not found in the cited source";
const MARKERS = /\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\](?!\()/g; // as inline.ts reads citations
const CONTEXT_CHARS = 140; // source text shown around a quote in the card

interface Claimed {
  content: string;
  sources: Source[];
  citations?: Citation[];
}

/** Wire the answer's citation buttons to their sentences' quotes and mark unsupported sentences. */
export function decorateClaims(answer: HTMLElement, message: Claimed, cardFor: (n: number) => HTMLElement | null): void {
  const citations = message.citations ?? [];
  if (citations.length === 0) return;
  const known = new Map(message.sources.map((source) => [source.index, source]));
  const buttons = Array.from(answer.querySelectorAll<HTMLButtonElement>("button.cite"));
  let next = 0;
  for (const match of message.content.matchAll(MARKERS)) {
    const sentence = citations.find((c) => c.start <= (match.index ?? 0) && (match.index ?? 0) < c.end);
    for (const part of match[1].split(",")) {
      const n = Number.parseInt(part.trim(), 10);
      if (!known.has(n)) continue; // rendered as plain text, no button
      const button = buttons[next++];
      if (!button || !sentence) continue;
      wireButton(button, n, sentence, known.get(n) as Source, cardFor);
    }
  }
  citations
    .filter((c) => c.claim && !c.supported)
    .forEach((c) => markUnsupported(answer, message.content.slice(c.start, c.end)));
}

function wireButton(
  button: HTMLButtonElement,
  n: number,
  sentence: Citation,
  source: Source,
  cardFor: (n: number) => HTMLElement | null,
): void {
  // An unsupported sentence has no quote to show: its closest span does not back it.
  const quote = sentence.supported && sentence.quote && sentence.quote.source === n ? sentence.quote : null;
  if (sentence.claim && !sentence.supported) {
    button.classList.add("unsupported");
    button.title = UNSUPPORTED_NOTE;
    button.setAttribute("aria-label", `Source ${n}, ${UNSUPPORTED_NOTE}`);
  } else if (quote) {
    const text = source.text.slice(quote.start, quote.end);
    button.title = text;
    button.setAttribute("aria-label", `Source ${n}: ${text}`);
  }
  const show = () => {
    const card = cardFor(n);
    if (!card) return;
    showQuote(card, source, quote ? [quote.start, quote.end] : null);
    card.classList.add("quoting");
    card.scrollIntoView?.({ block: "nearest", inline: "nearest" });
  };
  const hide = () => {
    const card = cardFor(n);
    if (!card) return;
    card.classList.remove("quoting");
    const snippet = card.querySelector(".snippet");
    if (snippet) snippet.textContent = source.snippet;
  };
  button.addEventListener("mouseenter", show);
  button.addEventListener("focus", show);
  button.addEventListener("mouseleave", hide);
  button.addEventListener("blur", hide);
}

/** The card's snippet becomes the source text around the quote, the quote itself in a <mark>. */
export function showQuote(card: HTMLElement, source: Source, span: [number, number] | null): void {
  const snippet = card.querySelector(".snippet");
  if (!snippet || !span) return;
  const [start, end] = span;
  const from = Math.max(0, start - CONTEXT_CHARS);
  const to = Math.min(source.text.length, end + CONTEXT_CHARS);
  const mark = document.createElement("mark");
  mark.className = "quote";
  mark.setAttribute("data-testid", "lorechat-quote");
  mark.textContent = source.text.slice(start, end);
  snippet.replaceChildren(
    document.createTextNode((from > 0 ? "…" : "") + source.text.slice(from, start)),
    mark,
    document.createTextNode(source.text.slice(end, to) + (to < source.text.length ? "…" : "")),
  );
  mark.scrollIntoView?.({ block: "nearest", inline: "nearest" });
}

/** Wrap the rendered text of one answer sentence (markers aside) in subtle "unsupported" spans. */
function markUnsupported(answer: HTMLElement, sentence: string): void {
  const words = sentence.replace(MARKERS, " ").split(/\s+/).filter(Boolean);
  if (words.length === 0) return;
  const nodes: Text[] = [];
  const walker = document.createTreeWalker(answer, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!(node.parentElement?.closest("button.cite, .claim-unsupported"))) nodes.push(node as Text);
  }
  const flat = nodes.map((node) => node.data).join("");
  const escaped = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const found = new RegExp(escaped.join("\\s+")).exec(flat);
  if (!found) return;
  let offset = 0;
  let first = true;
  const [start, end] = [found.index, found.index + found[0].length];
  for (const node of nodes) {
    const [from, to] = [offset, offset + node.data.length];
    offset = to;
    if (to <= start || from >= end) continue;
    let piece = node;
    if (start > from) piece = piece.splitText(start - from);
    if (end < to) piece.splitText(end - Math.max(from, start));
    const span = document.createElement("span");
    span.className = "claim-unsupported";
    span.title = UNSUPPORTED_NOTE;
    span.setAttribute("data-testid", "lorechat-unsupported");
    if (first) {
      // Reachable by keyboard, and read with its note by screen readers; the answer's text stays the answer.
      span.tabIndex = 0;
      span.setAttribute("aria-description", UNSUPPORTED_NOTE);
      first = false;
    }
    piece.replaceWith(span);
    span.appendChild(piece);
  }
}
