// Inline Markdown (emphasis, code, links, citations, entities) parsed to a tree; no HTML ever survives.

export type Inline =
  | { t: "text"; v: string }
  | { t: "strong"; c: Inline[] }
  | { t: "em"; c: Inline[] }
  | { t: "code"; v: string }
  | { t: "link"; href: string | null; c: Inline[] }
  | { t: "cite"; n: number };

/** Accept only absolute http(s) URLs; anything else (javascript:, data:, relative, malformed) gives null. */
export function safeHref(raw: string): string | null {
  const value = raw.trim();
  if (!/^https?:\/\//i.test(value)) return null;
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0" };
const ESCAPABLE = "\\`*_{}[]()#+-.!<>&\"'|~";

function decodeEntity(body: string): string | null {
  const lower = body.toLowerCase();
  if (lower in ENTITIES) return ENTITIES[lower];
  if (!lower.startsWith("#")) return null; // unknown names stay as written
  const code = lower.startsWith("#x") ? Number.parseInt(lower.slice(2), 16) : Number.parseInt(lower.slice(1), 10);
  if (!Number.isFinite(code) || code <= 0 || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return "\ufffd";
  return String.fromCodePoint(code);
}

/** Find "[label](target)" starting at `open` (the "["); returns the parts and the index after ")". */
function matchLink(s: string, open: number): { label: string; target: string; end: number } | null {
  let depth = 0;
  let close = -1;
  for (let j = open; j < s.length; j++) {
    if (s[j] === "\\") {
      j++;
    } else if (s[j] === "[") {
      depth++;
    } else if (s[j] === "]" && --depth === 0) {
      close = j;
      break;
    }
  }
  if (close === -1 || s[close + 1] !== "(") return null;
  let parens = 0;
  for (let j = close + 2; j < s.length; j++) {
    if (s[j] === "(") parens++;
    else if (s[j] === ")" && parens-- === 0) {
      let target = s.slice(close + 2, j).trim();
      target = target.replace(/\s+(?:"[^"]*"|'[^']*')$/, ""); // drop an optional title
      if (target.startsWith("<") && target.endsWith(">")) target = target.slice(1, -1);
      return { label: s.slice(open + 1, close), target, end: j + 1 };
    } else if (s[j] === "\n") break;
  }
  return null;
}

export function parseInline(s: string): Inline[] {
  const out: Inline[] = [];
  let buf = "";
  const flush = () => {
    if (buf) out.push({ t: "text", v: buf });
    buf = "";
  };
  let i = 0;
  while (i < s.length) {
    const c = s[i];
    if (c === "\\" && i + 1 < s.length && ESCAPABLE.includes(s[i + 1])) {
      buf += s[i + 1];
      i += 2;
      continue;
    }
    if (c === "`") {
      let run = 1;
      while (s[i + run] === "`") run++;
      const ticks = "`".repeat(run);
      const end = s.indexOf(ticks, i + run);
      if (end !== -1) {
        flush();
        let v = s.slice(i + run, end).replace(/\n/g, " ");
        // CommonMark: one space each side is dropped, so "`` a `b` ``" can hold a backtick at either end.
        if (v.length > 2 && v.startsWith(" ") && v.endsWith(" ") && v.trim()) v = v.slice(1, -1);
        out.push({ t: "code", v });
        i = end + run;
      } else {
        buf += ticks;
        i += run;
      }
      continue;
    }
    if ((c === "!" && s[i + 1] === "[") || c === "[") {
      const open = c === "!" ? i + 1 : i;
      const cites = c === "[" ? /^\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\](?!\()/.exec(s.slice(i)) : null;
      if (cites) {
        flush();
        cites[1].split(",").forEach((n) => out.push({ t: "cite", n: Number.parseInt(n.trim(), 10) }));
        i += cites[0].length;
        continue;
      }
      const link = matchLink(s, open);
      if (link) {
        flush();
        // An image becomes a link to it (never an <img>), labelled with its alt text or its address.
        const label = c === "!" ? [{ t: "text", v: link.label || link.target } as Inline] : parseInline(link.label);
        out.push({ t: "link", href: safeHref(link.target), c: label });
        i = link.end;
        continue;
      }
    }
    if (c === "<") {
      const auto = /^<(https?:\/\/[^\s<>]+)>/i.exec(s.slice(i));
      if (auto) {
        flush();
        out.push({ t: "link", href: safeHref(auto[1]), c: [{ t: "text", v: auto[1] }] });
        i += auto[0].length;
        continue;
      }
    }
    if (c === "*" || c === "_") {
      const strong = s[i + 1] === c;
      const marker = strong ? c + c : c;
      const prev = i > 0 ? s[i - 1] : " ";
      const next = s[i + marker.length] ?? " ";
      const opens = !/\s/.test(next) && (c === "*" || !/[\p{L}\p{N}]/u.test(prev));
      if (opens) {
        const end = findCloser(s, i + marker.length, marker);
        if (end !== -1) {
          flush();
          const inner = parseInline(s.slice(i + marker.length, end));
          out.push(strong ? { t: "strong", c: inner } : { t: "em", c: inner });
          i = end + marker.length;
          continue;
        }
      }
      buf += marker;
      i += marker.length;
      continue;
    }
    if (c === "&") {
      const entity = /^&(#\d{1,7}|#x[0-9a-f]{1,6}|[a-z]{2,6});/i.exec(s.slice(i));
      const decoded = entity ? decodeEntity(entity[1]) : null;
      if (entity && decoded !== null) {
        buf += decoded;
        i += entity[0].length;
        continue;
      }
    }
    buf += c;
    i++;
  }
  flush();
  return out;
}

function findCloser(s: string, from: number, marker: string): number {
  for (let j = from; j < s.length; j++) {
    if (s[j] === "\\") {
      j++;
      continue;
    }
    if (s[j] === "`") {
      const end = s.indexOf("`", j + 1);
      if (end !== -1) j = end;
      continue;
    }
    if (s.startsWith(marker, j) && j > from && !/\s/.test(s[j - 1])) {
      // "**" must not close a single "*", and "_" closes only at a word boundary.
      if (marker.length === 1 && s[j + 1] === marker) {
        j++;
        continue;
      }
      if (marker[0] === "_" && /[\p{L}\p{N}]/u.test(s[j + marker.length] ?? "")) continue;
      return j;
    }
  }
  return -1;
}

