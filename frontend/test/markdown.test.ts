// The Markdown renderer must turn hostile model output into inert text (I7).
import { describe, expect, it } from "vitest";
import { formatWait } from "../src/format";
import { parseInline, renderMarkdown, safeHref } from "../src/markdown";

const TAGS = new Set(["P", "BR", "STRONG", "EM", "CODE", "PRE", "UL", "OL", "LI", "A", "SPAN", "BLOCKQUOTE", "HR", "BUTTON"]);
const ATTRS = new Set(["href", "target", "rel", "class", "start", "data-index"]);

function render(source: string): HTMLDivElement {
  const div = document.createElement("div");
  div.appendChild(
    renderMarkdown(source, document, {
      citation: (n) => {
        const button = document.createElement("button");
        button.setAttribute("data-index", String(n));
        button.textContent = `[${n}]`;
        return button;
      },
    }),
  );
  return div;
}

/** Every element is from the allowlist, every attribute too, and every href is http(s). */
function assertInert(root: HTMLElement): void {
  for (const el of Array.from(root.querySelectorAll("*"))) {
    expect(TAGS.has(el.tagName), `tag ${el.tagName}`).toBe(true);
    for (const attr of Array.from(el.attributes)) {
      expect(ATTRS.has(attr.name), `attribute ${attr.name}`).toBe(true);
      if (attr.name === "href") expect(attr.value).toMatch(/^https?:\/\//);
    }
  }
}

const PAYLOADS = [
  "<script>alert(1)</script>",
  '<img src=x onerror="alert(1)">',
  "<svg onload=alert(1)>",
  '<a href="javascript:alert(1)">x</a>',
  "[click](javascript:alert(1))",
  "[click](JaVaScRiPt:alert(1))",
  "[click]( javascript:alert(1) )",
  "[click](java\tscript:alert(1))",
  "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
  "[click](vbscript:msgbox(1))",
  "[click](//evil.test/x)",
  "![x](http://evil/)",
  "![x](javascript:alert(1))",
  "<javascript:alert(1)>",
  "&lt;script&gt;alert(1)&lt;/script&gt;",
  "&#60;img src=x onerror=alert(1)&#62;",
  "&#x3C;iframe src=http://evil/&#x3E;",
  "**<b onclick=alert(1)>bold</b>**",
  "`<script>`",
  "```html\n<script>alert(1)</script>\n```",
  "- <img src=x onerror=alert(1)>\n- [a](javascript:void(0))",
  "> <style>*{display:none}</style>",
  "[x](https://ok.test/\" onmouseover=\"alert(1))",
];

describe("XSS payloads render inert", () => {
  for (const payload of PAYLOADS) {
    it(JSON.stringify(payload), () => {
      const root = render(payload);
      assertInert(root);
      expect(root.querySelector("script, img, iframe, svg, style, b")).toBeNull();
    });
  }

  it("shows tags and decoded entities as text", () => {
    expect(render("<script>alert(1)</script>").textContent).toBe("<script>alert(1)</script>");
    expect(render("&lt;script&gt; &amp; &quot;").textContent).toBe('<script> & "');
    expect(render("&#0; &#xD800; &bogus;").textContent).toBe("\ufffd \ufffd &bogus;");
  });

  it("keeps a javascript: link as its text only", () => {
    const root = render("[click](javascript:alert(1))");
    expect(root.querySelector("a")).toBeNull();
    expect(root.textContent).toBe("click");
  });

  it("never makes an image: image syntax becomes a link, so nothing is fetched", () => {
    const root = render("![diagram](http://evil/pixel.png)");
    expect(root.querySelector("img")).toBeNull();
    const a = root.querySelector("a")!;
    expect(a.getAttribute("href")).toBe("http://evil/pixel.png");
    expect(a.textContent).toBe("diagram");
    expect(root.querySelectorAll("[src]").length).toBe(0);
  });
});

describe("Markdown structure", () => {
  it("renders paragraphs, emphasis, code and links", () => {
    const root = render("Hello **bold** and *it* and _it2_ and `x < y`.\n\nSee [docs](https://ex.test/a?b=1).");
    const paragraphs = root.querySelectorAll("p");
    expect(paragraphs.length).toBe(2);
    expect(root.querySelector("strong")!.textContent).toBe("bold");
    expect(Array.from(root.querySelectorAll("em")).map((e) => e.textContent)).toEqual(["it", "it2"]);
    expect(root.querySelector("code")!.textContent).toBe("x < y");
    const a = root.querySelector("a")!;
    expect(a.getAttribute("href")).toBe("https://ex.test/a?b=1");
    expect(a.getAttribute("rel")).toBe("noopener noreferrer nofollow");
    expect(a.getAttribute("target")).toBe("_blank");
  });

  it("reads code holding a backtick in double backticks, one space each side dropped", () => {
    const root = render("Run: `` # avail=`mktemp` ``; `# rm -f x`.");
    expect(Array.from(root.querySelectorAll("code")).map((c) => c.textContent)).toEqual([
      "# avail=`mktemp`",
      "# rm -f x",
    ]);
  });

  it("renders lists, fenced code, quotes and headings", () => {
    const root = render("# Title\n\n- one\n- two\n  continued\n\n3. three\n4. four\n\n```\na **b**\n```\n\n> quoted");
    expect(root.querySelector(".md-heading")!.textContent).toBe("Title");
    expect(Array.from(root.querySelectorAll("ul li")).map((li) => li.textContent)).toEqual(["one", "two continued"]);
    expect(root.querySelector("ol")!.getAttribute("start")).toBe("3");
    expect(root.querySelector("pre code")!.textContent).toBe("a **b**");
    expect(root.querySelector("blockquote")!.textContent).toBe("quoted");
  });

  it("leaves intraword underscores and unclosed markers as text (mid-stream)", () => {
    expect(render("snake_case_name").textContent).toBe("snake_case_name");
    expect(render("still **stream").querySelector("strong")).toBeNull();
    expect(render("```\nopen fence").querySelector("pre")!.textContent).toBe("open fence");
  });

  it("turns [n] into citations but keeps [n](url) a link", () => {
    const root = render("Engines run [1] and [2, 3]; see [4](https://ex.test/).");
    const cites = Array.from(root.querySelectorAll("button")).map((b) => b.getAttribute("data-index"));
    expect(cites).toEqual(["1", "2", "3"]);
    expect(root.querySelector("a")!.textContent).toBe("4");
  });

  it("renders citations as text when no element is supplied", () => {
    const div = document.createElement("div");
    div.appendChild(renderMarkdown("fact [9]", document, { citation: () => null }));
    expect(div.textContent).toBe("fact [9]");
    expect(parseInline("a \\*b\\*")).toEqual([{ t: "text", v: "a *b*" }]);
  });
});

describe("safeHref", () => {
  it("accepts only absolute http(s)", () => {
    expect(safeHref("https://ex.test/x")).toBe("https://ex.test/x");
    expect(safeHref(" HTTP://ex.test ")).toBe("http://ex.test/");
    for (const bad of ["javascript:alert(1)", "/relative", "mailto:a@b", "http://", "data:x", "//ex.test"]) {
      expect(safeHref(bad)).toBeNull();
    }
  });
});

describe("formatWait", () => {
  it("reads like a person: seconds, then minutes, then hours, rounded up", () => {
    expect([formatWait(42), formatWait(89), formatWait(90), formatWait(3600), formatWait(5401)]).toEqual(
      ["42 s", "89 s", "2 min", "60 min", "2 h"]);
  });
});
