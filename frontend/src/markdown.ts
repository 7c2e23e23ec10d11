// A small, safe Markdown renderer: text is parsed to a tree and built with createElement/textContent only.
//
// Model output is untrusted (I7): there is no raw HTML (tags show as text), no images (image syntax becomes
// a plain link, so nothing is fetched), and links keep only http(s) targets. Citations "[n]" become
// elements the caller supplies, so the widget can tie them to source cards.
import { type Inline, parseInline, safeHref } from "./inline";

export { type Inline, parseInline, safeHref };

export type Block =
  | { t: "p"; c: Inline[] }
  | { t: "heading"; c: Inline[] }
  | { t: "list"; ordered: boolean; start: number; items: Inline[][] }
  | { t: "pre"; v: string }
  | { t: "quote"; c: Block[] }
  | { t: "hr" };

const FENCE = /^ {0,3}(`{3,}|~{3,})/;
const HEADING = /^ {0,3}(#{1,6})(?:\s+(.*?))?\s*#*\s*$/;
const BULLET = /^ {0,6}[-*+]\s+(.*)$/;
const ORDERED = /^ {0,6}(\d{1,9})[.)]\s+(.*)$/;
const QUOTE = /^ {0,3}>\s?(.*)$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;

export function parseBlocks(source: string): Block[] {
  const lines = source.replace(/\r\n?/g, "\n").split("\n");
  const blocks: Block[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (line.trim() === "") {
      i++;
      continue;
    }
    const fence = FENCE.exec(line);
    if (fence) {
      const marker = fence[1];
      const body: string[] = [];
      i++;
      // An unclosed fence (still streaming) runs to the end of the text.
      while (i < lines.length && !lines[i].trimStart().startsWith(marker)) body.push(lines[i++]);
      i++;
      blocks.push({ t: "pre", v: body.join("\n") });
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      blocks.push({ t: "heading", c: parseInline(heading[2] ?? "") });
      i++;
      continue;
    }
    if (RULE.test(line)) {
      blocks.push({ t: "hr" });
      i++;
      continue;
    }
    if (QUOTE.test(line)) {
      const inner: string[] = [];
      while (i < lines.length && QUOTE.test(lines[i])) inner.push(QUOTE.exec(lines[i++])![1]);
      blocks.push({ t: "quote", c: parseBlocks(inner.join("\n")) });
      continue;
    }
    const bullet = BULLET.exec(line);
    const ordered = ORDERED.exec(line);
    if (bullet || ordered) {
      const isOrdered = !bullet;
      const pattern = isOrdered ? ORDERED : BULLET;
      const items: string[] = [];
      while (i < lines.length) {
        const match = pattern.exec(lines[i]);
        if (match) {
          items.push(isOrdered ? match[2] : match[1]);
        } else if (lines[i].trim() !== "" && /^\s+/.test(lines[i]) && items.length > 0) {
          items[items.length - 1] += " " + lines[i].trim(); // continuation line of the item
        } else {
          break;
        }
        i++;
      }
      const start = ordered ? Number.parseInt(ordered[1], 10) : 1;
      blocks.push({ t: "list", ordered: isOrdered, start, items: items.map((item) => parseInline(item)) });
      continue;
    }
    const para: string[] = [];
    while (i < lines.length && lines[i].trim() !== "" && !startsBlock(lines[i])) para.push(lines[i++].trim());
    blocks.push({ t: "p", c: parseInline(para.join("\n")) });
  }
  return blocks;
}

function startsBlock(line: string): boolean {
  return [FENCE, HEADING, BULLET, ORDERED, QUOTE, RULE].some((re) => re.test(line));
}

export interface RenderOptions {
  /** Build the element for citation [n]; null renders it as plain text. */
  citation?: (n: number) => HTMLElement | null;
}

/** Render Markdown into a fragment of inert DOM nodes. */
export function renderMarkdown(source: string, doc: Document, options: RenderOptions = {}): DocumentFragment {
  const fragment = doc.createDocumentFragment();
  for (const block of parseBlocks(source)) fragment.appendChild(renderBlock(block, doc, options));
  return fragment;
}

function renderBlock(block: Block, doc: Document, options: RenderOptions): Node {
  switch (block.t) {
    case "p":
      return withInlines(doc.createElement("p"), block.c, doc, options);
    case "heading": {
      const p = doc.createElement("p");
      p.className = "md-heading";
      return withInlines(p, block.c, doc, options);
    }
    case "pre": {
      const pre = doc.createElement("pre");
      const code = doc.createElement("code");
      code.textContent = block.v;
      pre.appendChild(code);
      return pre;
    }
    case "list": {
      const list = doc.createElement(block.ordered ? "ol" : "ul");
      if (block.ordered && block.start !== 1) list.setAttribute("start", String(block.start));
      for (const item of block.items) list.appendChild(withInlines(doc.createElement("li"), item, doc, options));
      return list;
    }
    case "quote": {
      const quote = doc.createElement("blockquote");
      for (const inner of block.c) quote.appendChild(renderBlock(inner, doc, options));
      return quote;
    }
    case "hr":
      return doc.createElement("hr");
  }
}

function withInlines(parent: HTMLElement, inlines: Inline[], doc: Document, options: RenderOptions): HTMLElement {
  for (const node of inlines) parent.appendChild(renderInline(node, doc, options));
  return parent;
}

function renderInline(node: Inline, doc: Document, options: RenderOptions): Node {
  switch (node.t) {
    case "text": {
      // Soft line breaks inside a paragraph stay visible as <br>.
      const parts = node.v.split("\n");
      if (parts.length === 1) return doc.createTextNode(node.v);
      const fragment = doc.createDocumentFragment();
      parts.forEach((part, k) => {
        if (k > 0) fragment.appendChild(doc.createElement("br"));
        fragment.appendChild(doc.createTextNode(part));
      });
      return fragment;
    }
    case "strong":
      return withInlines(doc.createElement("strong"), node.c, doc, options);
    case "em":
      return withInlines(doc.createElement("em"), node.c, doc, options);
    case "code": {
      const code = doc.createElement("code");
      code.textContent = node.v;
      return code;
    }
    case "link": {
      if (node.href === null) return withInlines(doc.createElement("span"), node.c, doc, options);
      const a = doc.createElement("a");
      a.setAttribute("href", node.href);
      a.setAttribute("target", "_blank");
      a.setAttribute("rel", "noopener noreferrer nofollow");
      return withInlines(a, node.c, doc, options);
    }
    case "cite":
      return options.citation?.(node.n) ?? doc.createTextNode(`[${node.n}]`);
  }
}
