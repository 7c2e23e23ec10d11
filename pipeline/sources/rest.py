"""reStructuredText (.rst, .rest): the sources of most Python projects' documentation, and of Sphinx sites in general.

The page a visitor reads is what Sphinx would render, so the reader keeps what a page shows and drops what only
steers the build:

- Section titles (underlined, or over- and underlined) are headings, levelled in the order their adornment styles
  first appear, as reST defines it; the first is the document's title.
- Paragraphs lose their inline markup and keep its text: roles (``:func:`~flask.Flask.run``` reads "run", as Sphinx
  shows it; ``:ref:`the guide <target>``` reads "the guide"), literals, emphasis, hyperlink references,
  footnote marks; `|name|` substitutions defined with `replace::` are replaced (rest_inline.py).
- Code stays code, its layout kept: literal blocks after "::", `code-block`/`sourcecode`/`code`/`doctest` and
  `>>>` sessions.
- Object descriptions (`.. py:data:: SECRET_KEY`, `.. function:: run(host, port)`, `.. option:: --debug`,
  `.. envvar::`, any domain's) read as the HTML build shows them: the signature on its own line, then its
  description, so a question naming a setting finds the lines that describe it.
- Admonitions and version notes keep their text under their label ("Note: …", "Deprecated since version 2.2:
  …"); list items, definition-list terms, field-list fields and table rows ("cell | cell | cell", as html.py reads
  a table row) are each their own block.
- `.. include:: other.rst` reads the other file in its place (its `:start-after:`/`:end-before:` part; as code
  with `:literal:` or `:code:`), only when that file lies inside the creator's folder, as every file ingest reads
  (`common.read_confined`); one that does not, cannot be read or includes itself is reported in the result's
  `errors` and the rest of the page is kept.
- Comments, hyperlink targets, `toctree`, `index`, `image` and the `auto*` directives (the text they pull in lives
  in Python code, not in this file) yield nothing.
- Blocks nested past 50 levels (lists in lists in quotes, no real page's shape) are read as paragraphs of text.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from backend.stages import Block, Document
from pipeline.sources.common import (
    OutsideRoot,
    ParseResult,
    SourceContext,
    clean_text,
    collapse,
    inside,
    paragraphs,
    read_confined,
    read_text,
    require_blocks,
    title_from_name,
)
from pipeline.sources.rest_inline import inline_text

_ADORNMENT_CHARS = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
_ADORNMENT = re.compile(r"^([" + re.escape(_ADORNMENT_CHARS) + r"])\1{2,}\s*$")
_EXPLICIT = re.compile(r"^\.\.(?:\s+|$)")
_DIRECTIVE = re.compile(r"^\.\.\s+([A-Za-z0-9][\w:.+-]*)::(?:\s+(.*))?$")
_SUBSTITUTION_DEF = re.compile(r"^\.\.\s+\|([^|]+)\|\s+([\w:.+-]+)::\s*(.*)$")
_TARGET = re.compile(r"^\.\.\s+(?:_|__)")
_FOOTNOTE = re.compile(r"^\.\.\s+\[([^\]]+)\]\s*(.*)$")
_BULLET = re.compile(r"^([-*+\u2022\u2023\u2043])(\s+|$)")
_ENUMERATED = re.compile(r"^(?:\d+|#|[a-zA-Z]|[ivxlcdmIVXLCDM]+)[.)](\s+|$)|^\((?:\d+|#|[a-zA-Z])\)(\s+|$)")
_FIELD = re.compile(r"^:((?:[^:\\`]|\\.|`[^`]*`)+):(?:\s+(.*)|$)")
_OPTION = r"-{1,2}[A-Za-z0-9][\w-]*(?:[ =]<?[\w.-]+>?)?"
_OPTION_LIST = re.compile(rf"^({_OPTION}(?:, {_OPTION})*)( {{2,}}|$)(.*)$")
_GRID_BORDER = re.compile(r"^\+(?:[-=]+\+)+\s*$")
_SIMPLE_BORDER = re.compile(r"^=+(?: +=+)+\s*$")
_LINE_BLOCK = re.compile(r"^\|(?: |$)")

# Directives whose content is code, kept as written.
_CODE_DIRECTIVES = {"code-block", "sourcecode", "code", "doctest", "testcode", "testoutput", "prompt", "parsed-literal"}
# Directives that render nothing a visitor reads from this file.
_SILENT_DIRECTIVES = {
    "toctree", "index", "image", "literalinclude", "currentmodule", "module", "highlight", "rst-class", "raw",
    "contents", "sectnum", "meta", "tabularcolumns", "default-role", "role", "spelling:word-list", "target-notes",
    "py:currentmodule", "py:module", "c:namespace", "cpp:namespace", "js:module", "graphviz", "digraph", "graph",
    "math", "inheritance-diagram", "autosummary", "program", "title", "header", "footer", "productionlist",
}  # fmt: skip
# Admonitions: their label, then their content.
_ADMONITIONS = {
    "note": "Note", "warning": "Warning", "tip": "Tip", "important": "Important", "caution": "Caution",
    "danger": "Danger", "attention": "Attention", "hint": "Hint", "error": "Error", "seealso": "See also",
    "todo": "To do",
}  # fmt: skip
_VERSION_NOTES = {
    "versionadded": "Added in version", "versionchanged": "Changed in version",
    "deprecated": "Deprecated since version", "versionremoved": "Removed in version",
}  # fmt: skip
# Directives whose argument is a title shown above their content.
_TITLED = {"admonition", "topic", "sidebar", "rubric", "table", "centered", "tab", "card"}
# Object descriptions (any domain): the signature is shown, then the description.
_OBJECT_KINDS = {
    "function", "method", "classmethod", "staticmethod", "decorator", "decoratormethod", "class", "exception",
    "attribute", "property", "data", "const", "var", "member", "macro", "type", "struct", "union", "enum",
    "enumerator", "option", "envvar", "describe", "object", "confval", "directive", "setting", "cmdoption",
    "event", "signal", "opcode", "pdbcommand", "2to3fixer", "cmake:command", "cmake:variable",
}  # fmt: skip

_DOMAINS = {"py", "c", "cpp", "js", "rst", "std", "math", "http", "cmake"}


# How deep blocks may nest (a list in a list in a quote ...): far past any real page; deeper text is kept as paragraphs.
_MAX_DEPTH = 50
# How deep included files may include others: a chain longer than this is a loop in all but name.
_INCLUDE_DEPTH = 8
# Reads an included file: (the name as written, the including file) -> its text, or None once the problem is noted.
Includer = Callable[[str, Path], "tuple[str, Path] | None"]


@dataclass
class _State:
    """What a document defines for all of it: the order its title styles appear in, its substitutions; and where
    its text is being read from (the file, for includes relative to it)."""

    styles: list[tuple[str, bool]] = field(default_factory=list)
    substitutions: dict[str, str] = field(default_factory=dict)
    file: Path | None = None
    include: Includer | None = None
    chain: tuple[Path, ...] = ()

    def level(self, char: str, overline: bool) -> int:
        style = (char, overline)
        if style not in self.styles:
            self.styles.append(style)
        return min(self.styles.index(style) + 1, 6)


def parse_rest(ctx: SourceContext) -> ParseResult:
    text = read_text(ctx)
    errors: list[str] = []
    blocks = rest_blocks(text, file=ctx.path, include=_includer(ctx, errors))
    if not blocks and errors:  # a page that is only an include that could not be read: say which
        raise ctx.error(errors[0].removeprefix(f"{ctx.source}: "))
    title = next((b.text for b in blocks if b.kind == "heading" and b.level == 1), None) or title_from_name(ctx.path)
    document = Document(
        kind="article",
        creator=ctx.creator,
        document_id=ctx.document_id,
        source=ctx.source,
        title=title,
        blocks=require_blocks(ctx, blocks),
    )
    return ParseResult(documents=[document], errors=errors)


def rest_blocks(text: str, *, file: Path | None = None, include: Includer | None = None) -> list[Block]:
    """reST text as blocks: headings, paragraphs, code, list items, definitions and table rows. `include` reads
    the files `.. include::` names (none are read without it)."""
    state = _State(file=file, include=include, chain=(file,) if file else ())
    blocks: list[Block] = []
    _read(text, state, blocks)
    return blocks


def _read(text: str, state: _State, blocks: list[Block]) -> None:
    lines = _lines(text)
    _collect_substitutions(lines, state)
    _Reader(lines, state, blocks).run()


def _lines(text: str) -> list[str]:
    return [line.expandtabs(8).rstrip() for line in clean_text(text).split("\n")]


def _includer(ctx: SourceContext, errors: list[str]) -> Includer:
    """Reads an included file for `ctx`'s page: relative to the including file (or, written "/x.rst", to the creator
    folder, as Sphinx reads it from its source folder), confined to the creator folder; a problem becomes one line of
    `errors` and the directive is skipped."""
    root = ctx.creator_root

    def include(name: str, including: Path) -> tuple[str, Path] | None:
        path = root / name.lstrip("/") if name.startswith("/") else including.parent / name
        where = f"{ctx.source}: include {name!r}"
        if not inside(root.resolve(), path.resolve()):  # "../x.rst", a link out: read_confined would refuse it too
            errors.append(f"{where}: outside the creator folder; not read (copy the file into it)")
            return None
        try:
            data = read_confined(path, root)
        except OutsideRoot as exc:
            errors.append(f"{where}: {exc}")
            return None
        except OSError as exc:
            errors.append(f"{where}: cannot read it ({exc.strerror or type(exc).__name__}); skipped")
            return None
        try:
            return clean_text(data.decode("utf-8-sig")), path
        except UnicodeDecodeError:
            errors.append(f"{where}: not valid UTF-8; skipped")
            return None

    return include


def _collect_substitutions(lines: list[str], state: _State) -> None:
    for line in lines:
        match = _SUBSTITUTION_DEF.match(line.strip())
        if match:
            state.substitutions[match.group(1)] = match.group(3).strip() if match.group(2) == "replace" else ""


class _Reader:
    """One pass over a run of lines at one indentation; nested content (a directive's body, a list item's, a
    block quote) is read by a reader of its own over the dedented lines, sharing the document's state."""

    def __init__(self, lines: list[str], state: _State, blocks: list[Block], depth: int = 0) -> None:
        self.lines = lines
        self.state = state
        self.blocks = blocks
        self.depth = depth
        self.i = 0

    def run(self) -> None:
        lines = self.lines
        if self.depth > _MAX_DEPTH:  # nested past any real document's depth: its text, as paragraphs
            self.blocks.extend(
                Block(text=text) for part in paragraphs("\n".join(lines)) if (text := self._inline(part.text))
            )
            return
        while self.i < len(lines):
            line = lines[self.i]
            if not line.strip():
                self.i += 1
            elif line[0] == " ":
                body, self.i = _indented(lines, self.i)
                self._nested(body)  # a block quote: read as its own content
            elif self._title():
                continue
            elif _ADORNMENT.match(line) and self._blank_or_edge(self.i - 1) and self._blank_or_edge(self.i + 1):
                self.i += 1  # a transition
            elif _EXPLICIT.match(line):
                self._explicit()
            elif _GRID_BORDER.match(line):
                self._grid_table()
            elif _SIMPLE_BORDER.match(line):
                self._simple_table()
            elif _BULLET.match(line) or (_ENUMERATED.match(line) and self._enumerated_item()):
                self._list_item()
            elif _FIELD.match(line):
                self._field()
            elif (option := _OPTION_LIST.match(line)) and option.group(2):
                self._option()
            elif _LINE_BLOCK.match(line):
                self._line_block()
            elif line.startswith(">>>"):
                self._doctest()
            else:
                self._paragraph()

    # -- structure ---------------------------------------------------------------------------------------------------

    def _blank_or_edge(self, index: int) -> bool:
        return index < 0 or index >= len(self.lines) or not self.lines[index].strip()

    def _title(self) -> bool:
        """A section title at self.i (underlined, or over- and underlined); consumes it when it is one."""
        lines, i = self.lines, self.i
        over = _ADORNMENT.match(lines[i])
        if over and i + 2 < len(lines) and lines[i + 1].strip() and (under := _ADORNMENT.match(lines[i + 2])):
            if under.group(1) == over.group(1) and not _ADORNMENT.match(lines[i + 1]):
                self._heading(lines[i + 1], over.group(1), overline=True)
                self.i = i + 3
                return True
        if over or i + 1 >= len(lines):
            return False
        under = _ADORNMENT.match(lines[i + 1])
        if not under or not self._blank_or_edge(i - 1):
            return False
        if len(lines[i + 1].strip()) < min(len(lines[i].strip()), 4):
            return False
        self._heading(lines[i], under.group(1), overline=False)
        self.i = i + 2
        return True

    def _heading(self, text: str, char: str, *, overline: bool) -> None:
        heading = self._inline(text)
        if heading:
            self.blocks.append(Block(text=heading, kind="heading", level=self.state.level(char, overline)))

    def _nested(self, lines: list[str]) -> None:
        _Reader(lines, self.state, self.blocks, self.depth + 1).run()

    def _enumerated_item(self) -> bool:
        """ "1. Text" starts a list item, but "A. Smith wrote" in running text does not: a single-letter or roman
        enumerator only counts when the next line is blank, indented or another item."""
        line = self.lines[self.i]
        if re.match(r"^(?:\d+|#)[.)]\s|^\((?:\d+|#)\)\s", line):
            return True
        following = self.lines[self.i + 1] if self.i + 1 < len(self.lines) else ""
        return not following.strip() or following.startswith(" ") or bool(_ENUMERATED.match(following))

    def _list_item(self) -> None:
        line = self.lines[self.i]
        match = _BULLET.match(line) or _ENUMERATED.match(line)
        assert match is not None
        width = match.end()
        first = line[width:]
        body, self.i = _indented(self.lines, self.i + 1, minimum=1)
        self._nested(([first] if first.strip() else []) + body)

    def _field(self) -> None:
        match = _FIELD.match(self.lines[self.i])
        assert match is not None
        name = self._inline(match.group(1))
        body, self.i = _indented(self.lines, self.i + 1, minimum=1)
        inner: list[Block] = []
        _Reader(([match.group(2)] if match.group(2) else []) + body, self.state, inner, self.depth + 1).run()
        if inner and inner[0].kind == "paragraph":
            inner[0] = Block(text=f"{name}: {inner[0].text}")
            self.blocks.extend(inner)
        elif name:
            self.blocks.append(Block(text=name))
            self.blocks.extend(inner)

    def _option(self) -> None:
        match = _OPTION_LIST.match(self.lines[self.i])
        assert match is not None
        body, self.i = _indented(self.lines, self.i + 1, minimum=1)
        description = self._inline(" ".join([match.group(3), *body]))
        self.blocks.append(Block(text=f"{match.group(1)} {description}".strip()))

    def _line_block(self) -> None:
        kept = []
        while self.i < len(self.lines) and _LINE_BLOCK.match(self.lines[self.i]):
            kept.append(self._inline(self.lines[self.i][1:]))
            self.i += 1
        text = "\n".join(line for line in kept if line)
        if text:
            self.blocks.append(Block(text=text))

    def _doctest(self) -> None:
        start = self.i
        while self.i < len(self.lines) and self.lines[self.i].strip():
            self.i += 1
        self._code(self.lines[start : self.i])

    def _code(self, lines: list[str]) -> None:
        code = "\n".join(_dedent(lines)).strip("\n")
        if code.strip():
            self.blocks.append(Block(text=code))

    def _paragraph(self) -> None:
        lines = self.lines
        start = self.i
        self.i += 1
        while self.i < len(lines) and lines[self.i].strip() and not lines[self.i].startswith(" "):
            self.i += 1
        para = lines[start : self.i]
        indented_next = self.i < len(lines) and lines[self.i].startswith(" ") and lines[self.i].strip()
        if not indented_next or para[-1].endswith("::"):
            self._text(para)  # "Example::" takes the code under it along, blank line or not
            return
        body, self.i = _indented(lines, self.i)
        if len(para) > 1:  # a paragraph, then a block quote
            self._text(para)
            self._nested(body)
            return
        # A one-line term followed at once by its indented definition: a definition-list item ("term : classifier"
        # keeps its classifier, as Sphinx shows it).
        term = self._inline(para[0])
        if term:
            self.blocks.append(Block(text=term))
        self._nested(body)

    def _text(self, para: list[str]) -> None:
        """A paragraph; one ending in "::" introduces the literal block that follows it."""
        raw = " ".join(line.strip() for line in para)
        literal = raw.endswith("::")
        if literal:  # "Text::" reads "Text:"; "Text ::" and a lone "::" leave no colon
            stem = raw[:-2]
            raw = stem.rstrip() if not stem or stem[-1].isspace() else stem + ":"
        text = self._inline(raw)
        if text:
            self.blocks.append(Block(text=text))
        if literal:
            while self.i < len(self.lines) and not self.lines[self.i].strip():
                self.i += 1
            if self.i < len(self.lines) and self.lines[self.i].startswith(" "):
                body, self.i = _indented(self.lines, self.i)
                self._code(body)
            elif self.i < len(self.lines) and self.lines[self.i][:1] in _ADORNMENT_CHARS:
                start = self.i  # a quoted literal block: every line starts with the same mark
                while self.i < len(self.lines) and self.lines[self.i].strip():
                    self.i += 1
                self._code(self.lines[start : self.i])

    # -- explicit markup -------------------------------------------------------------------------------------------

    def _explicit(self) -> None:
        line = self.lines[self.i]
        body, end = _indented(self.lines, self.i + 1, minimum=1)
        directive = _DIRECTIVE.match(line)
        footnote = _FOOTNOTE.match(line)
        self.i = end
        if _SUBSTITUTION_DEF.match(line) or _TARGET.match(line):
            return
        if footnote:
            self._nested(([footnote.group(2)] if footnote.group(2) else []) + body)
            return
        if directive:
            self._directive(directive.group(1).lower(), (directive.group(2) or "").strip(), body)
        # anything else is a comment

    def _directive(self, name: str, argument: str, body: list[str]) -> None:
        options, head, rest = _split_options(body)
        domain, _, kind = name.rpartition(":")
        kind = kind if domain in _DOMAINS or not domain else name
        if kind == "include":
            self._include(argument, options)
            return
        if kind.startswith("auto") or name in _SILENT_DIRECTIVES or kind in _SILENT_DIRECTIVES:
            return
        if kind in _OBJECT_KINDS:
            # Lines under the signature, before a blank line or the options, are more signatures of the same entry.
            for signature in (argument, *head):
                text = collapse(signature.replace("\\", ""))
                if text:
                    self.blocks.append(Block(text=text))
            self._nested(rest)
            return
        # Elsewhere they are the content's start (".. note::" with its text on the next line).
        content = [*head, "", *rest] if head else rest
        if kind in _CODE_DIRECTIVES:
            self._code(content)
        elif kind in _ADMONITIONS:
            self._labelled(_ADMONITIONS[kind], argument, content)
        elif kind in _VERSION_NOTES:
            version, _, note = argument.partition(" ")
            self._labelled(f"{_VERSION_NOTES[kind]} {version}".strip(), note, content)
        elif kind == "list-table":
            self._title_line(argument)
            self._list_table(content)
        elif kind == "csv-table":
            self._title_line(argument)
            self._csv_table(options, content)
        else:  # a titled container (a topic, a rubric, a figure's caption), or one that only holds content
            if kind in _TITLED:
                self._title_line(argument)
            self._nested(content)

    def _include(self, name: str, options: dict[str, str]) -> None:
        state = self.state
        if not name or name.startswith("<") or state.include is None or state.file is None:
            return  # "<isonum.txt>": docutils' own substitution sets, nothing to show
        if len(state.chain) > _INCLUDE_DEPTH:
            return
        found = state.include(name, state.file)
        if found is None:
            return
        text, path = found
        if path.resolve() in {p.resolve() for p in state.chain}:
            return  # a file that includes itself, directly or through others
        if "start-after" in options and options["start-after"] in text:
            text = text.split(options["start-after"], 1)[1]
        if "end-before" in options and options["end-before"] in text:
            text = text.split(options["end-before"], 1)[0]
        if "literal" in options or "code" in options:
            self._code(text.split("\n"))
            return
        inner = dataclasses.replace(state, file=path, chain=(*state.chain, path))
        inner.styles = state.styles  # the included text's titles continue the including page's levels
        inner.substitutions = state.substitutions
        _read(text, inner, self.blocks)

    def _title_line(self, argument: str) -> None:
        text = self._inline(argument)
        if text:
            self.blocks.append(Block(text=text))

    def _labelled(self, label: str, argument: str, content: list[str]) -> None:
        """An admonition or version note: its label leads its first paragraph, as the rendered page reads."""
        inner: list[Block] = []
        # Its text may go on below the directive's line.
        _Reader(([argument] if argument else []) + content, self.state, inner, self.depth + 1).run()
        if inner and inner[0].kind == "paragraph" and not _is_code(inner[0].text):
            inner[0] = Block(text=f"{label}: {inner[0].text}")
        else:
            inner.insert(0, Block(text=f"{label}."))
        self.blocks.extend(inner)

    # -- tables ----------------------------------------------------------------------------------------------------

    def _list_table(self, content: list[str]) -> None:
        """`.. list-table::`: a bullet list of rows, each a bullet list of cells."""
        for row in _bullet_items(content):
            self._row([self._cell(cell) for cell in _bullet_items(row)])

    def _csv_table(self, options: dict[str, str], content: list[str]) -> None:
        if "header" in options:
            self._row(next(csv.reader([options["header"]], skipinitialspace=True), []))
        rows = [line.strip() for line in content if line.strip()]
        for cells in csv.reader(rows, skipinitialspace=True):
            self._row([self._inline(cell) for cell in cells])

    def _grid_table(self) -> None:
        start = self.i
        while self.i < len(self.lines) and self.lines[self.i][:1] in "+|":
            self.i += 1
        table = self.lines[start : self.i]
        columns = [m.start() for m in re.finditer(r"\+", table[0])]
        row: list[list[str]] = [[] for _ in columns[:-1]]
        for line in table[1:]:
            if _GRID_BORDER.match(line):
                self._row([self._cell(cell) for cell in row])
                row = [[] for _ in columns[:-1]]
                continue
            for index, (left, right) in enumerate(itertools.pairwise(columns)):
                row[index].append(line[left + 1 : right])

    def _simple_table(self) -> None:
        border = self.lines[self.i]
        spans = [(m.start(), m.end()) for m in re.finditer(r"=+", border)]
        self.i += 1
        rows: list[list[str]] = []
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if _SIMPLE_BORDER.match(line):
                self.i += 1
                # The closing border is followed by a blank line or the end; a header's border by more rows.
                if self._blank_or_edge(self.i):
                    break
                continue
            if not line.strip() or re.match(r"^-+(?: +-+)+\s*$", line):
                self.i += 1
                continue
            ends = [left for left, _ in spans[1:]] + [len(line)]
            cells = [line[left:end] for (left, _), end in zip(spans, ends, strict=True)]
            if rows and not cells[0].strip():
                for k, cell in enumerate(cells):
                    rows[-1][k] += " " + cell  # a continuation line of the row above
            else:
                rows.append(cells)
            self.i += 1
        for cells in rows:
            self._row([self._inline(cell) for cell in cells])

    def _cell(self, lines: list[str]) -> str:
        inner: list[Block] = []
        _Reader(_dedent(lines), self.state, inner, self.depth + 1).run()
        return " ".join(block.text for block in inner)

    def _row(self, cells: list[str]) -> None:
        text = " | ".join(cell for cell in (collapse(c) for c in cells) if cell)
        if text:
            self.blocks.append(Block(text=text))

    # -- inline markup ---------------------------------------------------------------------------------------------

    def _inline(self, text: str) -> str:
        return collapse(inline_text(text, self.state.substitutions))


def _bullet_items(lines: list[str]) -> list[list[str]]:
    """A bullet list's items, each as its lines with the marker taken off and the item's indentation removed."""
    items = []
    lines = _dedent(lines)
    i = 0
    while i < len(lines):
        match = _BULLET.match(lines[i])
        if not match:
            i += 1
            continue
        first = lines[i][match.end() :]
        rest, i = _indented(lines, i + 1, minimum=1)
        items.append(([first] if first.strip() else []) + rest)
    return items


def _is_code(text: str) -> bool:
    return "\n" in text


def _indented(lines: list[str], start: int, *, minimum: int = 1) -> tuple[list[str], int]:
    """The indented lines from `start` (blank lines inside kept, trailing ones dropped), dedented, and the index
    after them."""
    end = start
    last = start
    while end < len(lines):
        line = lines[end]
        if line.strip():
            if len(line) - len(line.lstrip(" ")) < minimum:
                break
            last = end + 1
        end += 1
    return _dedent(lines[start:last]), last


def _dedent(lines: list[str]) -> list[str]:
    widths = [len(line) - len(line.lstrip(" ")) for line in lines if line.strip()]
    cut = min(widths, default=0)
    return [line[cut:] for line in lines]


def _split_options(body: list[str]) -> tuple[dict[str, str], list[str], list[str]]:
    """A directive's body (dedented): its `:option: value` lines, the lines before the first blank line that are not
    options (an object's further signatures, or content that starts at once), and the rest (its content)."""
    options: dict[str, str] = {}
    head: list[str] = []
    last = ""
    i = 0
    while i < len(body) and body[i].strip():
        line = body[i]
        match = _FIELD.match(line)
        if match:
            last = match.group(1).lower()
            options[last] = (match.group(2) or "").strip()
        elif options and line.startswith(" "):
            options[last] = f"{options[last]} {line.strip()}".strip()  # an option's value continued
        elif options:
            break  # content right after the options
        else:
            head.append(line)
        i += 1
    return options, head, body[i:]
