"""Parsers: every format on small files written here, and every kind of bad input (the demo corpus and the
transcript formats have their own files)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from pypdf import PdfWriter

from backend.grounding.sentences import split_sentences
from pipeline.sources import SUPPORTED_SUFFIXES, ParseError, content_files
from tests.pipeline.source_files import parse, parse_one, text_pdf, write

# --- identity ---------------------------------------------------------------------------------------


def test_document_identity_and_source(tmp_path: Path) -> None:
    doc = parse_one(write(tmp_path, "talks/notes/intro.md", "Hello there."))
    assert doc.creator == "ada"
    assert doc.document_id == "ada/talks/notes/intro.md"
    assert doc.source == "ada/talks/notes/intro.md"


def test_supported_suffixes() -> None:
    assert {".md", ".txt", ".html", ".htm", ".pdf", ".srt", ".vtt", ".jsonl"} <= SUPPORTED_SUFFIXES


# --- markdown and text ------------------------------------------------------------------------------


def test_markdown_front_matter_headings_code_and_lists(tmp_path: Path) -> None:
    text = (
        "---\ntitle: Starter Notes\nurl: https://example.com/notes\npublished: 2024-05-01\ntags: x\n---\n"
        "# Feeding\n\nFeed   daily,\nwith care.\n\n## Ratio ##\n\n- one part starter\n- two parts flour\n\n"
        "```python\ndef feed(jar):\n    jar.add(  'flour'  )\n\n    return jar\n```\n\n"
        "Setext heading\n--------------\n\nLast words.\n"
    )
    doc = parse_one(write(tmp_path, "notes.md", text))
    assert doc.title == "Starter Notes"
    assert doc.url == "https://example.com/notes"
    assert doc.published == "2024-05-01"
    assert doc.metadata == {"tags": "x"}
    assert [(b.kind, b.level, b.text) for b in doc.blocks] == [
        ("heading", 1, "Feeding"),
        ("paragraph", 0, "Feed daily, with care."),
        ("heading", 2, "Ratio"),
        ("paragraph", 0, "- one part starter\n- two parts flour"),
        ("paragraph", 0, "```python\ndef feed(jar):\n    jar.add(  'flour'  )\n\n    return jar\n```"),
        ("heading", 2, "Setext heading"),
        ("paragraph", 0, "Last words."),
    ]


def test_markdown_title_falls_back_to_h1_then_file_name(tmp_path: Path) -> None:
    assert parse_one(write(tmp_path, "a.md", "intro\n\n# The Real Title\n\nbody")).title == "The Real Title"
    assert parse_one(write(tmp_path, "salt-and_time.md", "## Only h2\n\nbody")).title == "Salt and time"


def test_markdown_bad_front_matter(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match=r"ada/bad\.md: front matter is not valid YAML"):
        parse(write(tmp_path, "bad.md", "---\ntitle: [unclosed\n---\nbody\n"))
    with pytest.raises(ParseError, match="field 'title' must be text"):
        parse(write(tmp_path, "list.md", "---\ntitle: [a, b]\n---\nbody\n"))


def test_markdown_front_matter_only_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="no text found"):
        parse(write(tmp_path, "empty.md", "---\ntitle: Nothing\n---\n\n"))


def test_text_title_from_first_line_or_name(tmp_path: Path) -> None:
    doc = parse_one(write(tmp_path, "notes.txt", "My Title\n\nFirst  paragraph\nwraps.\n\nSecond."))
    assert doc.title == "My Title"
    assert [(b.kind, b.text) for b in doc.blocks] == [
        ("heading", "My Title"),
        ("paragraph", "First paragraph wraps."),
        ("paragraph", "Second."),
    ]
    assert parse_one(write(tmp_path, "one-liner.txt", "Just one paragraph.")).title == "One liner"


def test_text_normalisation(tmp_path: Path) -> None:
    raw = "\ufeffCafe\u0301 \x00na\x07ive\u200b\r\n\r\nTabs\tand   spaces\x1b[0m\rnext"
    doc = parse_one(write(tmp_path, "n.txt", raw))
    assert doc.blocks[0].text == "Café naive\u200b"  # NFC; NUL/BEL gone; zero-width space is not a control
    assert doc.blocks[1].text == "Tabs and spaces[0m next"


# --- html -------------------------------------------------------------------------------------------


PAGE = """<!doctype html><html><head><title>Crumb Guide | Ada's Site</title>
<link rel="canonical stylesheet" href=" https://example.com/crumb ">
<style>.x{color:red}</style><script>var secretTracker = 1;</script></head>
<body><header><nav>Home Shop</nav></header>
<aside>Buy my book</aside>
<main><article><header><h1>Crumb Guide</h1></header>
<!-- a comment that must not appear -->
<p>Open   crumb needs <b>time</b> and <a href="#">patience</a>.</p>
<h2>Steps</h2><ul><li>Mix</li><li>Fold <em>gently</em></li></ul>
<div>Loose text in a div<br>continues here.</div>
<pre>keep   this
  layout</pre>
<noscript>Enable JS</noscript><form><input value="x">Email us</form>
<p hidden>hidden text</p>
</article></main>
<footer>All rights reserved</footer></body></html>"""


def test_html_main_text_only(tmp_path: Path) -> None:
    doc = parse_one(write(tmp_path, "crumb.html", PAGE))
    assert doc.title == "Crumb Guide"
    assert doc.url == "https://example.com/crumb"
    assert [(b.kind, b.level, b.text) for b in doc.blocks] == [
        ("heading", 1, "Crumb Guide"),
        ("paragraph", 0, "Open crumb needs time and patience."),
        ("heading", 2, "Steps"),
        ("paragraph", 0, "Mix"),
        ("paragraph", 0, "Fold gently"),
        ("paragraph", 0, "Loose text in a div"),
        ("paragraph", 0, "continues here."),
        ("paragraph", 0, "keep   this\n  layout"),
    ]
    for dropped in ("Home Shop", "Buy my book", "secretTracker", "color:red", "comment", "Enable JS", "Email us",
                    "hidden text", "All rights reserved"):  # fmt: skip
        assert dropped not in doc.text


def test_html_without_main_uses_body_and_h1_title(tmp_path: Path) -> None:
    page = "<html><body><nav>Menu</nav><h1>Only H1</h1><p>Body text.</p><footer>foot</footer></body></html>"
    doc = parse_one(write(tmp_path, "page.htm", page))
    assert doc.title == "Only H1"
    assert doc.url is None
    assert doc.text == "Only H1\n\nBody text."


def test_html_table_rows_stay_rows(tmp_path: Path) -> None:
    """A row's name and its values are one line, cells in order: read cell by cell they were unrelated paragraphs
    ("valgrind", "V:6", "memory debugger"), and no answer could say which value is whose."""
    page = (
        "<main><p>There are several tools.</p><table><caption>Tools</caption>"
        "<thead><tr><th>package</th><th>size</th><th>description</th></tr></thead><tbody>"
        "<tr><td><code>valgrind</code></td><td>77683</td><td><p>memory debugger</p><p>and profiler</p></td></tr>"
        "<tr><td>mtrace<span>(1)</span></td><td></td><td>malloc debugging</td></tr>"
        "<tr><td></td></tr></tbody></table><p>After the table.</p></main>"
    )
    doc = parse_one(write(tmp_path, "tools.html", page))
    assert [b.text for b in doc.blocks] == [
        "There are several tools.",
        "Tools",
        "package | size | description",
        "valgrind | 77683 | memory debugger and profiler",
        "mtrace(1) | malloc debugging",
        "After the table.",
    ]
    # A row is quotable, never read as a heading, however short.
    rows = [span for span in split_sentences(doc.text) if " | " in span.text]
    assert len(rows) == 3 and not any(span.is_heading for span in rows)


def test_html_with_only_chrome_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="no text found"):
        parse(write(tmp_path, "chrome.html", "<html><body><nav>Home</nav><script>x()</script></body></html>"))


# --- pdf --------------------------------------------------------------------------------------------


def test_pdf_text_and_title(tmp_path: Path) -> None:
    doc = parse_one(write(tmp_path, "guide.pdf", text_pdf(["Salt at two percent.", "Hydration at 70."], title="Guide")))
    assert doc.title == "Guide"
    assert "Salt at two percent." in doc.text and "Hydration at 70." in doc.text
    untitled = parse_one(write(tmp_path, "weekend-loaf.pdf", text_pdf(["Some text here."])))
    assert untitled.title == "Weekend loaf"


def test_pdf_without_text(tmp_path: Path) -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    buffer = io.BytesIO()
    writer.write(buffer)
    with pytest.raises(ParseError, match="no extractable text"):
        parse(write(tmp_path, "scan.pdf", buffer.getvalue()))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"this is not a pdf at all", "not a PDF file"),
        (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 9 0 R >>\n", "corrupt or unreadable"),
        (b"%PDF-1.4\n" + bytes(range(256)) * 4, "corrupt or unreadable"),
    ],
)
def test_corrupt_pdf(tmp_path: Path, data: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason) as info:
        parse(write(tmp_path, "broken.pdf", data))
    assert str(info.value).startswith("ada/broken.pdf: ")


def test_truncated_pdf(tmp_path: Path) -> None:
    whole = text_pdf(["Complete sentence."])
    with pytest.raises(ParseError, match=r"ada/cut\.pdf: "):
        parse(write(tmp_path, "cut.pdf", whole[: len(whole) // 3]))


# --- jsonl ------------------------------------------------------------------------------------------


def test_jsonl_keeps_good_lines_and_reports_bad_ones(tmp_path: Path) -> None:
    lines = [
        json.dumps(
            {
                "id": "q1",
                "title": "One",
                "text": "First answer.\n\nSecond para.",
                "url": "https://e.x/1",
                "creator": "ada",
                "metadata": {"topic": "salt"},
                "published": "2024-01-01",
            }
        ),
        "{not json",
        json.dumps({"id": "ada/q2", "title": "Two", "text": "Already prefixed."}),
        json.dumps({"id": "q3", "title": "Three", "text": "Wrong creator.", "creator": "bob"}),
        "",
        json.dumps({"id": "q4", "text": "No title."}),
        json.dumps(["a", "list"]),
        json.dumps({"id": "q1", "title": "Again", "text": "Duplicate."}),
        json.dumps({"id": "q5", "title": "Five", "text": "   "}),
        json.dumps({"id": "q6", "title": "Six", "text": "Meta.", "metadata": "nope"}),
        json.dumps({"id": "q7", "title": "Seven", "text": "Lone \ud800 surrogate and NUL\u0000."}),
    ]
    result = parse(write(tmp_path, "faq.jsonl", "\n".join(lines) + "\n"))
    assert [(d.document_id, d.source, d.title) for d in result.documents] == [
        ("ada/q1", "ada/faq.jsonl#L1", "One"),
        ("ada/q2", "ada/faq.jsonl#L3", "Two"),
        ("ada/q7", "ada/faq.jsonl#L11", "Seven"),
    ]
    first = result.documents[0]
    assert (first.url, first.published, first.metadata) == ("https://e.x/1", "2024-01-01", {"topic": "salt"})
    assert [b.text for b in first.blocks] == ["First answer.", "Second para."]
    assert result.documents[2].text == "Lone surrogate and NUL."
    assert result.documents[2].content_hash  # encodable: no lone surrogate survived
    assert [error.split(": ", 1)[0] for error in result.errors] == [
        f"ada/faq.jsonl#L{n}" for n in (2, 4, 6, 7, 8, 9, 10)
    ]
    joined = "\n".join(result.errors)
    for reason in ("invalid JSON", "does not match the folder's creator 'ada'", "missing field(s): title",
                   "must be a JSON object", "duplicate id (first used on line 1)", "field 'text' is empty",
                   "field 'metadata' must be an object"):  # fmt: skip
        assert reason in joined


def test_jsonl_with_no_good_line_is_a_file_error(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match=r"no valid lines \(2 bad; first: invalid JSON"):
        parse(write(tmp_path, "bad.jsonl", "{oops\n[1]\n"))


# --- whole-file failures, any format ----------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".md", ".txt", ".html", ".srt", ".vtt", ".jsonl", ".pdf"])
@pytest.mark.parametrize(("content", "reason"), [(b"", "empty"), (b"  \n\t\r\n ", "empty")])
def test_empty_files(tmp_path: Path, suffix: str, content: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=f"file is {reason} or whitespace only"):
        parse(write(tmp_path, f"blank{suffix}", content))


@pytest.mark.parametrize("suffix", [".md", ".txt", ".html", ".srt", ".vtt", ".jsonl"])
def test_invalid_utf8(tmp_path: Path, suffix: str) -> None:
    with pytest.raises(ParseError, match=r"not valid UTF-8 \(bad byte at offset 6\)") as info:
        parse(write(tmp_path, f"latin1{suffix}", "Caf\u00e9 ".encode() + b"\xe9t\xe9 au four\n"))
    message = str(info.value)
    assert message.startswith(f"ada/latin1{suffix}: ")
    assert "\n" not in message and "Traceback" not in message


def test_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match=r"ada/notes\.docx: unsupported file type '\.docx'; supported: "):
        parse(write(tmp_path, "notes.docx", b"PK\x03\x04"))
    with pytest.raises(ParseError, match="unsupported file type '\\(no suffix\\)'"):
        parse(write(tmp_path, "Makefile", "all:\n"))


def test_unreadable_path(tmp_path: Path) -> None:
    folder = tmp_path / "ada" / "folder.md"
    folder.mkdir(parents=True)
    with pytest.raises(ParseError, match="cannot read file"):
        parse(folder)


def test_parse_error_carries_reason_and_source(tmp_path: Path) -> None:
    with pytest.raises(ParseError) as info:
        parse(write(tmp_path, "x.txt", ""))
    assert isinstance(info.value, ValueError)
    assert (info.value.source, info.value.reason) == ("ada/x.txt", "file is empty or whitespace only")


# --- folder listing -------------------------------------------------------------


def test_content_files_skips_hidden_and_creator_yaml(tmp_path: Path) -> None:
    for rel in ("creator.yaml", "b.md", "a/z.vtt", ".git/config", "a/.DS_Store", "notes.docx"):
        write(tmp_path, rel, "x")
    root = tmp_path / "ada"
    assert [p.relative_to(root).as_posix() for p in content_files(root)] == ["a/z.vtt", "b.md", "notes.docx"]


def test_html_nested_thousands_deep_keeps_its_text(tmp_path: Path) -> None:
    """Elements nested past Python's recursion limit (a damaged or hostile page): its text, not a crashed ingest."""
    page = "<html><body>" + "<div>" * 5000 + "<p>Deep down.</p>" + "</div>" * 5000 + "<p>After.</p></body></html>"
    assert [b.text for b in parse_one(write(tmp_path, "deep.html", page)).blocks] == ["Deep down.", "After."]


def test_a_parser_that_recurses_too_deep_fails_its_file_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every format passes one gate: a file nested past a parser's depth is that file's error, one line (I9)."""
    from pipeline import sources

    def recurse(ctx: object) -> object:
        return recurse(ctx)

    monkeypatch.setitem(sources.PARSERS, ".txt", recurse)
    with pytest.raises(ParseError) as error:
        parse(write(tmp_path, "notes.txt", "Hello."))
    assert str(error.value) == "ada/notes.txt: nested too deeply to read (thousands of levels inside one another)"
