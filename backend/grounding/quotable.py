"""How a source chunk reads: its quotable sentences, each with what it carries along.

Technical text: short code-bearing lines just above a sentence (a definition list's terms, an option's spellings, a
table's first cell, a parameter with its type, a function's signature, a keyword in capitals) are the terms it defines,
read as its own words and quoted with it; code lines after a sentence that introduces them ("run this:" then a command,
a statement, a signature, or values one a line) are quoted with it, and so is the rest of the sentence when it goes on
after the code ("... or:" `createdb -O rolename dbname` "from the shell."), and the terms of a definition list it
introduces ("the following required keys:") and the items of a list it announces ("There are three ... bits."), and the
code a bare "Example:" line after it introduces; a table row reads with its table's column names, and knows its first
cell (what the row is about) and, under a first row that names the columns, the columns it does not spell out; a first
sentence naming its subject only as "this command" is labelled with the name its page's title opens with. What a line
between sentences is (code, a term line, an example set on its own) is code_lines.py's reading; which sentence it
belongs to is this module's. relevance.py scores these against a question.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from backend.grounding.code_lines import (
    BLOCK_HEADER,
    CODE_TOKEN,
    INTRODUCES,
    MAX_LABEL_LINES,
    NAME_LINE,
    code_after,
    code_names,
    example_code,
    is_term_line,
    term_lines,
)
from backend.grounding.sentences import Span, split_sentences
from backend.grounding.terms import text_terms


@dataclass(frozen=True, slots=True)
class Quotable:
    span: Span
    previous: Span | None
    earlier: Span | None  # the sentence before `previous`, in the same run of sentences
    context: frozenset[str]
    terms: frozenset[str]  # its own, its label's (a definition is about the term it defines) and its code's
    label: str
    code: str
    items: tuple[Span, ...]
    # A later sentence of a term's description: the description's first sentence, which says what the term does
    # ("--tags: Instead of using only the annotated tags, use any tag ..." before "This option enables ...").
    lead: Span | None = None
    # A table row below its column names: its first cell's terms (the thing the row is about: "MSDOS and
    # Windows") and its columns' that the row itself does not say ("EOL code"). Empty elsewhere.
    row_key: frozenset[str] = frozenset()
    columns: frozenset[str] = frozenset()
    # The sentence going on after the code it introduces ("use one of the following commands:" `CREATE DATABASE
    # ...` "from the SQL environment, or:" `createdb -O rolename dbname` "from the shell."): each part that goes on,
    # with the code it introduces in turn; quoted with it, and its words are the sentence's.
    continued: tuple[tuple[str, str], ...] = ()
    # The example a line only pointing at it introduces ("Example:", "So you can do something like this:"), as (that
    # line, its code): quoted after the sentence.
    example: tuple[str, str] | None = None

    @property
    def bare(self) -> bool:
        """Nothing is quoted after it yet (code, items, the rest after its code, an example): an example may join it."""
        return not (self.code or self.items or self.continued or self.example)

    @property
    def states_a_value(self) -> bool:
        """A line giving its entry's value ("Default: False"): it means what the entry's first sentence means."""
        return bool(_DEFAULT_LINE.match(self.span.text))

    @property
    def whole(self) -> str:
        """All it is quoted with, as one text: its term line, the sentence, its code, the rest after the code and its
        example."""
        parts = (
            self.label,
            self.span.text,
            self.code,
            *(text for part in self.continued for text in part),
            *(self.example or ()),
        )
        return " ".join(part for part in parts if part)


# A sentence that announces a list ("There are three more special permission bits.", "The following keys are
# required:"): the items after it, each on its own line, are what it is about.
_ANNOUNCES = re.compile(
    r"^(?:there (?:are|exist)|here are|these are)\b.*\b(?:following|several|many|various|some|few|more|other|two|"
    r"three|four|five|six|seven|eight|nine|ten|\d+)\b|\bthe following\b|:$",
    re.IGNORECASE,
)
# A table's or figure's caption ("Table 12.15.") is not an item of the list before it.
_CAPTION = re.compile(r"^(?:table|figure|example)\s+[\dA-Z][\d.]*\.?$", re.IGNORECASE)
_COUNTS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}
_MAX_ITEMS = 8
_MAX_ITEM_WORDS = 25


def _items_after(text: str, span: Span, body: Sequence[Span]) -> tuple[Span, ...]:
    """The list items `span` announces: the sentences right after it, each on a line of its own, short, and read as
    items (no closing full stop, or a dozen words at most); as many as it counts ("three"), else up to eight; at
    least two, or none."""
    if not _ANNOUNCES.search(span.text):
        return ()
    words = re.findall(r"\b(?:\d+|[a-z]+)\b", span.text.lower())
    counted = next((int(w) if w.isdigit() else _COUNTS[w] for w in words if w.isdigit() or w in _COUNTS), 0)
    limit = counted if 2 <= counted <= _MAX_ITEMS else _MAX_ITEMS
    items: list[Span] = []
    end = span.end
    for following in (b for b in body if b.start >= span.end):
        if _CAPTION.match(following.text):
            end = following.end
            continue
        length = len(following.text.split())
        is_item = length <= _MAX_ITEM_WORDS and (not following.text.endswith((".", "!", "?")) or length <= 12)
        if "\n" not in text[end : following.start] or not is_item or _ANNOUNCES.search(following.text):
            break
        items.append(following)
        end = following.end
        if len(items) == limit:
            break
    return tuple(items) if len(items) >= 2 else ()


# Not sentences, though they end like one: a heading's number the splitter left alone ("31.11."), and a statement on
# a line of its own ("CREATE SUBSCRIPTION mysub CONNECTION '...' PUBLICATION mypub;"), code a sentence introduces.
_STATEMENT_LINE = re.compile(r"^[A-Z]{2,}(?: [A-Z]{2,})* \S.*;$")
_NOT_SENTENCE = re.compile(rf"^(?:\d+\.)+\d*$|{_STATEMENT_LINE.pattern}")


# A reference entry's default on a line of its own ("Default: True", "Default: timedelta(days=31)"), as Sphinx sets a
# configuration value's: a statement about the term above it, however short.
_DEFAULT_LINE = re.compile(r"^Default(?: value)?: \S")
# A line that only announces the code after it as an example of the sentence before ("Example:", "For example:").
_BARE_EXAMPLE = re.compile(r"^(?:for )?(?:an )?examples?(?: usage)?:$|^usage:$", re.IGNORECASE)
# So is a line made only of words that point at what follows ("So you can do something like this:", "And in action:",
# "Here is what this looks like:", "And from the command line:"): the code after it shows the sentence before.
_POINTING = frozenset(
    "so and then now again here is are what this that it these looks look like you we can could would might do does "
    "something in action the an example from on command line shell invoke use used call run be written write "
    "following follows as way for instance output".split()
)
# A sentence of prose, capitalised and closed as one: not a line of code the splitter ended at a "!"
# ('click.echo(f"Hello {name}!').
_PROSE = re.compile(r"^[A-Z].*[.!?:]$")
# A sentence an example set after it shows: prose of four words or more, closed by a full stop or, in a manual page's
# examples, by a parenthesis ("To restore a file in the index ... (this is the same as using git-reset(1))").
_SHOWN_BY = re.compile(r"^[A-Za-z]\S*(?:\s+\S+){3,}[.)]$")


def _only_points(text: str) -> bool:
    """A line that says nothing but "what follows shows the sentence before" (_BARE_EXAMPLE, _POINTING)."""
    if _BARE_EXAMPLE.match(text):
        return True
    words = re.findall(r"[^\W\d_]+|\S", text[:-1].lower()) if text.endswith(":") else []
    return bool(words) and all(word in _POINTING for word in words)


def _next_sentence(text: str, span: Span, body: Sequence[Span]) -> int:
    """Where the first quotable sentence after `span` starts (the end of `text` if none): what lies between is the code
    `span` introduces."""
    return next((b.start for b in body if b.start >= span.end), len(text))


def _in_code_block(text: str, span: Span) -> bool:
    """A block header on an indented line: the code block's, however much it reads like words."""
    line = text.rfind("\n", 0, span.start) + 1
    return line < span.start and not text[line : span.start].strip() and bool(BLOCK_HEADER.match(span.text))


# A line dating what is above it: an ISO date or a day, a month's name and a year ("Released 2022-03-28", "Posted 3 May
# 2024", "Updated: March 3, 2024"), short. The section it dates is still what the sentences after it are about.
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
_DATE_LINE = re.compile(rf"\b\d{{4}}-\d{{2}}-\d{{2}}\b|\b{_MONTH} \d{{1,2}},? \d{{4}}\b|\b\d{{1,2}} {_MONTH} \d{{4}}\b")
_DATE_LINE_WORDS = 5


# A shell session's command line: a command ("$ ping -4 -c 1 www.debian.org", "$ ./configure") or a variable set for it
# ("$ FLASK_APP=hello flask run"), not a price at a line's start ("$ 5 a loaf").
_PROMPT_LINE = re.compile(r"[ \t]*\$ (?:[a-z./~]|[A-Z_]+=)")


def _printed(text: str, spans: Sequence[Span]) -> set[int]:
    """The starts of the sentences a shell session printed: on a line below a command at its prompt, in the same block
    of lines ("PING www.debian.org (149.20.4.15) 1472(1500) bytes of data.", "Try 'repeat --help' for help."): not the
    author's. One pass over the lines."""
    if "$ " not in text:
        return set()
    lines: set[int] = set()  # where each printed line starts
    session, at = False, 0
    for line in text.split("\n"):
        if not line.strip(" \t"):
            session = False  # a blank line ends the block
        elif _PROMPT_LINE.match(line):
            session = True
        elif session:
            lines.add(at)
        at += len(line) + 1
    return {
        span.start for span in spans if not span.text.startswith("$ ") and text.rfind("\n", 0, span.start) + 1 in lines
    }


def _is_body(span: Span) -> bool:
    """A sentence to quote: not a heading or a command line, but a short one ending in a colon ("To preview, run
    this:") is one, and so is a line stating a default."""
    if span.text.startswith(("$ ", "# ")):  # a shell prompt's line: code, quoted with the sentence introducing it
        return False
    if _NOT_SENTENCE.match(span.text):
        return False
    if _DEFAULT_LINE.match(span.text):
        return True
    return not span.is_heading or (span.text.endswith(":") and len(span.text.split()) >= 3)


def _listed_after(text: str, span: Span, body: Sequence[Span]) -> str:
    """The terms of the definition list a sentence ending in a colon introduces ("... the following required keys:",
    then each key on its own line with its description, in sentences, after it): every entry's term lines, up to
    eight entries, when there are two or more; else "". Lines of a plain list ("dash -n script.sh - Syntax check")
    are items, not terms."""
    entries: list[list[str]] = []
    end = span.end
    for following in (b for b in body if b.start >= span.end):
        gap = text[end : following.start]
        if gap.strip():
            terms = term_lines(gap)
            if not terms or len(terms) != len([line for line in gap.splitlines() if line.strip()]):
                break  # a heading or a line of prose: the list has ended
            if not following.text.endswith((".", "!", "?")):
                break  # an item of a list, not a description
            entries.append(terms)
        elif not entries:
            break
        if len(entries) == _MAX_ITEMS or INTRODUCES.search(following.text):
            break
        end = following.end
    else:
        # The chunk ends inside the list: term lines after its last sentence are the next entry's, whose
        # description the next chunk holds.
        last = term_lines(text[end:]) if entries else None
        if last and len(last) == len([line for line in text[end:].splitlines() if line.strip()]):
            entries.append(last)
    return "\n".join(term for terms in entries for term in terms) if len(entries) >= 2 else ""


# What goes on with a sentence after the code it introduced, in lower case: a connective or an auxiliary ("from the
# shell.", "which allows mailmap to replace ...", "and psql will quit ...", "will return a table ..."). Not a word
# the code named ("name follows the rules for SQL identifiers" after `CREATE ROLE name;`), nor code.
_GOES_ON = re.compile(
    r"^(?:from|which|where|whereupon|and|or|to|then|with|as|in|for|because|but|so|if|when|until|after|before|using|"
    r"via|on|at|will|would|should|can|could|may|might|must|is|are|returns?|gives?|prints?|produces?|shows?)\b"
    r"(?![^\s]*[=|;{}])"
)
# A part that stops at "or" or "and": the code after it is the other choice ("... to indicate ..., or" `git bisect
# new [<rev>]`).
_OR_ELSE = re.compile(r"(?:,|\bor|\band)$")
_NOT_PROSE = re.compile(r"[|{}]|==|;$|^\w+ =")


def _continued(text: str, span: Span, code: str, body: Sequence[Span]) -> tuple[tuple[Span, str], ...]:
    """The parts of `span`'s sentence after the code it introduces, each with the code it introduces in turn."""
    parts: list[tuple[Span, str]] = []
    current = span
    while code and len(parts) < MAX_LABEL_LINES:
        after = next((b for b in body if b.start >= current.end), None)
        if after is None or not _GOES_ON.match(after.text) or _NOT_PROSE.search(after.text):
            break
        code = ""
        if INTRODUCES.search(after.text) or _OR_ELSE.search(after.text):
            end = next((b.start for b in body if b.start >= after.end), len(text))
            code = code_after(text[after.end : end])
        parts.append((after, code))
        current = after
    return tuple(parts)


def _names_columns(row: str) -> bool:
    """A table's first row that names its columns ("platform | EOL code | control"): short words in every cell, no
    code and no figures; a table without one opens with a row of data."""
    cells = [cell.strip() for cell in row.split(" | ")]
    return all(
        cell and len(cell.split()) <= 4 and not re.search(r"\d", cell) and not CODE_TOKEN.search(cell) for cell in cells
    )


# A sentence naming its subject only as the page's own: "This command shows the differences between ...".
_THIS_SUBJECT = re.compile(
    r"^this (?:command|program|tool|utility|script|module|package|library|function|daemon|service)\b", re.IGNORECASE
)
# A page title's name: "git-range-diff - Compare two commit ranges", "os — Miscellaneous operating system interfaces".
_TITLE_NAME = re.compile(r"^(.+?)\s+[-–—:]\s")


def _subject(title: str) -> str:
    """The name a page is about, when its title opens with one: a single term ("git-range-diff", "os.path")."""
    match = _TITLE_NAME.match(title)
    name = match.group(1).strip() if match else ""
    return name if " " not in name and is_term_line(name) else ""


@lru_cache(maxsize=4096)
def quotable(text: str, heading: str, title: str = "") -> tuple[Quotable, ...]:
    """A source's quotable sentences, each with the one before it, its context's terms, its own terms, the term
    lines it defines and the code it introduces. Cached: the same chunks come back turn after turn, and reading
    them again was a fifth of a coverage check (py-spy). `title`: the page's; a first sentence that names its
    subject only as "this command" is labelled with the name the title opens with."""
    read: list[Quotable] = []
    context_of_heading = text_terms(heading)
    previous: Span | None = None
    earlier: Span | None = None
    spans = split_sentences(text)
    # Read once (`body` and the loop use it): lines of a code block, and what a shell session printed.
    in_code = {span.start for span in spans if _in_code_block(text, span)} | _printed(text, spans)
    body = [span for span in spans if _is_body(span) and span.start not in in_code]
    label, gap_start, listing, named_columns = "", 0, False, False
    lead: Span | None = None  # the first sentence after the current term line(s)
    goes_on: set[int] = set()  # the starts of sentences read as the rest of one before them (_continued)
    header: frozenset[str] | None = None  # the column names of the table a run of rows is in (its first row)
    for span in spans:
        if _only_points(span.text) and read and read[-1].span is previous:
            # "... it will also do some basic checks for you such as existence checks." "Example:" `@click.argument(
            # 'filename', type=click.Path(exists=True))`: the example is the sentence before's, in code.
            after = _next_sentence(text, span, body)
            code = code_after(text[span.end : after])
            before = read[-1]
            prose = _PROSE.match(before.span.text) is not None
            if code and prose and before.bare:
                read[-1] = replace(before, terms=before.terms | text_terms(code), example=(span.text, code))
                gap_start = after
                continue
        if span.start in in_code or not _is_body(span):
            # A heading: what follows is about it; code goes with its sentence. A code block's line is neither.
            # A line dating the section ("Released 2022-03-28" under "Version 8.1.0") is no heading of its own.
            if _DATE_LINE.search(span.text) and len(span.text.split()) <= _DATE_LINE_WORDS:
                context_of_heading, previous, earlier = context_of_heading | text_terms(span.text), None, None
            elif not (span.start in in_code or _STATEMENT_LINE.match(span.text)):
                context_of_heading, previous, earlier = text_terms(span.text), None, None
            continue
        row_key: frozenset[str] = frozenset()
        if " | " not in span.text:
            header, named_columns = None, False
        elif header is None or previous is None or previous.end < span.start - 2:
            header = text_terms(span.text)  # a table's first row
            named_columns = _names_columns(span.text)
        elif named_columns:
            row_key = text_terms(span.text.split(" | ", 1)[0])
        gap = text[gap_start : span.start]
        shown = example_code(gap)
        # An example set on its own between two sentences: the one after it explains it when it names what the
        # example's code does ("$ gunicorn -w 4 'hello:app'" then "The -w option specifies the number of processes
        # ..."), a sentence of prose, and is quoted with it as its term; else it shows the sentence before ("First,
        # retrieve the list of packages installed ..." then `$ dpkg --get-selections >pkg-list`), its code, quoted with
        # it. Not a line the session printed past a blank line ("--help  Show this message and exit.").
        commands = [line for line in shown.splitlines() if line.startswith("$ ")]
        explained = (
            bool(commands)
            and _PROSE.match(span.text) is not None
            and not code_names(span.text).isdisjoint(code_names(shown))
        )
        if not explained:
            _show(read, gap_start, shown)
        terms = commands if explained else term_lines(gap)
        if terms is not None:
            # Lines after a sentence ending in a colon are the code it introduced, not terms being defined, unless
            # they open the definition list it introduced.
            introduced = gap_start and INTRODUCES.search(text[max(0, gap_start - 200) : gap_start])
            # One name alone ("The following signals exist:" `flask.template_rendered` "This signal is sent ..."):
            # the sentence introduced it and the sentence after it defines it; both quote it.
            named_alone = len(terms) == 1 and NAME_LINE.match(terms[0])
            label = "" if introduced and not listing and not named_alone else ", ".join(terms)
            lead = None
        gap_start = span.end
        context = context_of_heading | text_terms(previous.text) if previous else context_of_heading
        if span.start in goes_on:  # quoted as the rest of the sentence before its code
            earlier, previous = previous, span
            continue
        if _CAPTION.match(span.text):  # "Figure 6.1." names what is not in the text: nothing to quote
            continue
        if not span.text.endswith("?"):  # a question in the source is not an answer
            code, listing = "", False
            if INTRODUCES.search(span.text):
                code = _listed_after(text, span, body)
                listing = bool(code)
                if not listing:
                    code = code_after(text[span.end : _next_sentence(text, span, body)])
            items = () if code else _items_after(text, span, body)
            continued = () if listing else _continued(text, span, code, body)
            goes_on.update(part.start for part, _ in continued)
            named = label
            if not named and previous is None and title and _THIS_SUBJECT.match(span.text):
                named = _subject(title)
            own = text_terms(span.text) | text_terms(named) if named else text_terms(span.text)
            # What it introduces is what it says ("the following functions can be used:" then
            # `brin_summarize_new_values(regclass) which summarizes all unsummarized ranges;`).
            if code:
                own |= text_terms(code)
            for part, part_code in continued:
                own |= text_terms(part.text) | text_terms(part_code)
            if header is not None:  # a row says its columns' names: "B | 172.16.x.x" is class B's network address
                own |= header
            first = lead is None
            if label and first:
                lead = span
            read.append(
                Quotable(
                    span,
                    previous,
                    earlier,
                    context,
                    own,
                    named,
                    code,
                    items,
                    None if first else lead,
                    row_key,
                    header - text_terms(span.text) if row_key and header is not None else frozenset(),
                    tuple((part.text, part_code) for part, part_code in continued),
                )
            )
        earlier, previous = previous, span
    _show(read, gap_start, example_code(text[gap_start:]))  # an example closing the chunk
    return tuple(read)


def _show(read: list[Quotable], gap_start: int, code: str) -> None:
    """`code`, an example set on its own at `gap_start`, goes with the sentence read last when that one ends right
    there and is prose carrying nothing else."""
    if not code or not read or read[-1].span.end != gap_start:
        return
    before = read[-1]
    if _SHOWN_BY.match(before.span.text) and before.bare:
        read[-1] = replace(before, terms=before.terms | text_terms(code), code=code)
