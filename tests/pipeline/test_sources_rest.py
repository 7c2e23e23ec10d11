"""The reStructuredText reader: what a rendered Sphinx page shows, from the source a docs project keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.sources import SUPPORTED_SUFFIXES, ParseError
from pipeline.sources.rest_inline import inline_text
from tests.pipeline.source_files import parse, parse_one, write


def blocks(tmp_path: Path, text: str, name: str = "page.rst") -> list[tuple[str, int, str]]:
    doc = parse_one(write(tmp_path, name, text))
    return [(b.kind, b.level, b.text) for b in doc.blocks]


def test_rst_suffixes_are_supported() -> None:
    assert {".rst", ".rest"} <= SUPPORTED_SUFFIXES


def test_titles_levelled_by_first_appearance_and_the_first_is_the_title(tmp_path: Path) -> None:
    text = (
        "=========\nThe Guide\n=========\n\nOpening words.\n\n"
        "Install\n-------\n\nRun it.\n\nFrom source\n~~~~~~~~~~~\n\nBuild it.\n\n"
        "Configure\n---------\n\nSet it.\n"
    )
    doc = parse_one(write(tmp_path, "guide.rst", text))
    assert doc.title == "The Guide"
    assert doc.kind == "article"
    assert [(b.kind, b.level, b.text) for b in doc.blocks] == [
        ("heading", 1, "The Guide"),
        ("paragraph", 0, "Opening words."),
        ("heading", 2, "Install"),
        ("paragraph", 0, "Run it."),
        ("heading", 3, "From source"),
        ("paragraph", 0, "Build it."),
        ("heading", 2, "Configure"),
        ("paragraph", 0, "Set it."),
    ]


def test_title_falls_back_to_the_file_name(tmp_path: Path) -> None:
    assert parse_one(write(tmp_path, "release-notes.rst", "Just a paragraph.\n")).title == "Release notes"


def test_inline_markup_reads_as_the_page_shows_it() -> None:
    assert inline_text("The :attr:`~flask.Flask.config` attribute of :class:`~flask.Flask`") == (
        "The config attribute of Flask"
    )
    assert inline_text("See :ref:`the tutorial <tutorial>` and :doc:`/patterns/index`.") == (
        "See the tutorial and /patterns/index."
    )
    assert inline_text("Use ``--debug`` with **care**, *always*.") == "Use --debug with care, always."
    assert inline_text("Read `the docs <https://example.org/>`_ or Werkzeug_ [1]_.") == "Read the docs or Werkzeug."
    assert inline_text(r"A literal ``*args`` and an escaped \*star\*.") == "A literal *args and an escaped *star*."
    assert inline_text("Call :func:`!open` or :meth:`dict.update`.") == "Call open or dict.update."
    # What looks like markup inside a literal stays as written.
    assert inline_text("``:func:`x` and **y**``") == ":func:`x` and **y**"
    whole = "Keys like SECRET_KEY and snake_case stay whole."
    assert inline_text(whole) == whole


def test_paragraphs_join_lines_and_literal_blocks_keep_their_layout(tmp_path: Path) -> None:
    text = (
        "Title\n=====\n\nThe config is a dict and\ncan be changed::\n\n    app = Flask(__name__)\n"
        "    app.config['TESTING'] = True\n\nOr expanded ::\n\n    app.testing = True\n\n::\n\n    $ flask run\n\n"
        ">>> 1 + 1\n2\n"
    )
    assert blocks(tmp_path, text)[1:] == [
        ("paragraph", 0, "The config is a dict and can be changed:"),
        ("paragraph", 0, "app = Flask(__name__)\napp.config['TESTING'] = True"),
        ("paragraph", 0, "Or expanded"),
        ("paragraph", 0, "app.testing = True"),
        ("paragraph", 0, "$ flask run"),
        ("paragraph", 0, ">>> 1 + 1\n2"),
    ]


def test_code_directives_are_code_and_build_directives_vanish(tmp_path: Path) -> None:
    text = (
        ".. _config:\n\n.. currentmodule:: flask\n\n.. toctree::\n   :maxdepth: 2\n\n   install\n   quickstart\n\n"
        ".. code-block:: python\n   :caption: app.py\n\n   def index():\n       return 'Hi'\n\n"
        ".. image:: logo.png\n   :alt: Logo\n\n.. autoclass:: Flask\n   :members:\n\n"
        ".. This is a comment\n   over two lines.\n\n..\n   Another comment.\n\n"
        ".. include:: <isonum.txt>\n\nThe end.\n"
    )
    assert blocks(tmp_path, text) == [
        ("paragraph", 0, "def index():\n    return 'Hi'"),
        ("paragraph", 0, "The end."),
    ]


def test_object_descriptions_read_as_signature_then_description(tmp_path: Path) -> None:
    text = (
        "Config\n======\n\n.. py:data:: SECRET_KEY\n\n    A secret key used for signing the session cookie.\n\n"
        "    Default: ``None``\n\n    .. versionadded:: 1.0\n\n"
        ".. function:: run(host=None, port=None)\n   start(host)\n   :noindex:\n\n   Runs the app.\n\n"
        ".. option:: --debug\n\n   Enable debug mode.\n\n.. envvar:: FLASK_APP\n\n   Where the app is.\n"
    )
    assert blocks(tmp_path, text)[1:] == [
        ("paragraph", 0, "SECRET_KEY"),
        ("paragraph", 0, "A secret key used for signing the session cookie."),
        ("paragraph", 0, "Default: None"),
        ("paragraph", 0, "Added in version 1.0."),
        ("paragraph", 0, "run(host=None, port=None)"),
        ("paragraph", 0, "start(host)"),
        ("paragraph", 0, "Runs the app."),
        ("paragraph", 0, "--debug"),
        ("paragraph", 0, "Enable debug mode."),
        ("paragraph", 0, "FLASK_APP"),
        ("paragraph", 0, "Where the app is."),
    ]


def test_admonitions_and_version_notes_keep_their_label(tmp_path: Path) -> None:
    text = (
        ".. note:: Keep the key secret.\n\n.. warning::\n   Never enable debug mode\n   in production.\n\n"
        ".. deprecated:: 2.2\n    Will be removed in Flask 2.3.\n\n.. admonition:: About the tutorial\n\n"
        "   It builds a blog.\n\n.. seealso::\n\n   :doc:`/tutorial/index`\n"
    )
    assert blocks(tmp_path, text) == [
        ("paragraph", 0, "Note: Keep the key secret."),
        ("paragraph", 0, "Warning: Never enable debug mode in production."),
        ("paragraph", 0, "Deprecated since version 2.2: Will be removed in Flask 2.3."),
        ("paragraph", 0, "About the tutorial"),
        ("paragraph", 0, "It builds a blog."),
        ("paragraph", 0, "See also: /tutorial/index"),
    ]


def test_lists_definitions_and_fields_are_one_block_each(tmp_path: Path) -> None:
    text = (
        "- first item\n  continued here\n- second item\n\n  with a second paragraph\n\n"
        "1. one\n2. two\n\n#. auto\n\n"
        "SECRET_KEY\n    Signs the session cookie.\n\nDEBUG : bool\n    Turns the debugger on.\n\n"
        ":param host: the interface to bind\n    to, default all.\n:returns: nothing\n\n"
        "-v, --verbose  Say more.\n--port=PORT    Port to listen on.\n\n| Line one\n| Line two\n"
    )
    assert blocks(tmp_path, text) == [
        ("paragraph", 0, "first item continued here"),
        ("paragraph", 0, "second item"),
        ("paragraph", 0, "with a second paragraph"),
        ("paragraph", 0, "one"),
        ("paragraph", 0, "two"),
        ("paragraph", 0, "auto"),
        ("paragraph", 0, "SECRET_KEY"),
        ("paragraph", 0, "Signs the session cookie."),
        ("paragraph", 0, "DEBUG : bool"),
        ("paragraph", 0, "Turns the debugger on."),
        ("paragraph", 0, "param host: the interface to bind to, default all."),
        ("paragraph", 0, "returns: nothing"),
        ("paragraph", 0, "-v, --verbose Say more."),
        ("paragraph", 0, "--port=PORT Port to listen on."),
        ("paragraph", 0, "Line one\nLine two"),
    ]


def test_tables_are_rows_of_cells(tmp_path: Path) -> None:
    text = (
        "+--------+---------+\n| Key    | Default |\n+========+=========+\n| DEBUG  | False   |\n"
        "|        | (off)   |\n+--------+---------+\n\n"
        "=====  =======\nKey    Default\n=====  =======\nPORT   5000\nHOST   127.0.0.1\n       (loopback)\n"
        "=====  =======\n\n"
        ".. list-table:: Limits\n   :header-rows: 1\n\n   * - Name\n     - Value\n   * - ``MAX_CONTENT_LENGTH``\n"
        '     - None\n\n.. csv-table:: Codes\n   :header: "Code", "Meaning"\n\n'
        '   200, OK\n   "404", "Not, found"\n'
    )
    assert blocks(tmp_path, text) == [
        ("paragraph", 0, "Key | Default"),
        ("paragraph", 0, "DEBUG | False (off)"),
        ("paragraph", 0, "Key | Default"),
        ("paragraph", 0, "PORT | 5000"),
        ("paragraph", 0, "HOST | 127.0.0.1 (loopback)"),
        ("paragraph", 0, "Limits"),
        ("paragraph", 0, "Name | Value"),
        ("paragraph", 0, "MAX_CONTENT_LENGTH | None"),
        ("paragraph", 0, "Codes"),
        ("paragraph", 0, "Code | Meaning"),
        ("paragraph", 0, "200 | OK"),
        ("paragraph", 0, "404 | Not, found"),
    ]


def test_substitutions_defined_with_replace_are_replaced(tmp_path: Path) -> None:
    text = (
        ".. |project| replace:: Flask\n.. |logo| image:: logo.png\n\n|logo| Welcome to |project|'s documentation "
        "for |version|; a|b|c stays.\n"
    )
    assert blocks(tmp_path, text) == [("paragraph", 0, "Welcome to Flask's documentation for version; a|b|c stays.")]


def test_include_reads_the_other_file_in_place(tmp_path: Path) -> None:
    write(tmp_path, "CONTRIBUTING.rst", "How to help\n-----------\n\nOpen an issue.\n\n.. include:: snippets/run.rst\n")
    write(tmp_path, "snippets/run.rst", "Run the tests.\n")
    write(tmp_path, "README.rst", "Intro\n\n.. start\n\nThe middle part.\n\n.. end\n\nOutro\n")
    write(tmp_path, "snippets/app.py", "app = Flask(__name__)\n")
    page = write(
        tmp_path,
        "docs/index.rst",
        "Flask\n=====\n\n.. include:: ../CONTRIBUTING.rst\n\n.. include:: /README.rst\n   :start-after: .. start\n"
        "   :end-before: .. end\n\n.. include:: ../snippets/app.py\n   :literal:\n",
    )
    result = parse(page)
    assert result.errors == []
    assert [(b.kind, b.level, b.text) for b in result.documents[0].blocks] == [
        ("heading", 1, "Flask"),
        ("heading", 2, "How to help"),  # the included titles continue the page's levels
        ("paragraph", 0, "Open an issue."),
        ("paragraph", 0, "Run the tests."),  # relative to the included file
        ("paragraph", 0, "The middle part."),  # "/README.rst": from the creator folder
        ("paragraph", 0, "app = Flask(__name__)"),
    ]


def test_include_outside_the_creator_folder_is_refused_and_reported(tmp_path: Path) -> None:
    secret = tmp_path / "secret.rst"
    secret.write_text("The other creator's draft.\n", encoding="utf-8")
    page = write(
        tmp_path,
        "index.rst",
        ".. include:: ../secret.rst\n\n.. include:: linked.rst\n\n.. include:: /../secret.rst\n\n"
        ".. include:: missing.rst\n\n.. include:: index.rst\n\nStill here.\n",
    )
    (page.parent / "linked.rst").symlink_to(secret)
    result = parse(page)
    assert [(b.text) for b in result.documents[0].blocks] == ["Still here."]  # itself: read once, never in a loop
    outside = "outside the creator folder; not read (copy the file into it)"
    assert result.errors == [
        f"ada/index.rst: include '../secret.rst': {outside}",
        f"ada/index.rst: include 'linked.rst': {outside}",
        f"ada/index.rst: include '/../secret.rst': {outside}",
        "ada/index.rst: include 'missing.rst': cannot read it (No such file or directory); skipped",
    ]
    assert all("draft" not in b.text for b in result.documents[0].blocks)
    only = write(tmp_path, "only.rst", ".. include:: ../secret.rst\n")
    with pytest.raises(ParseError) as refused:
        parse(only)  # a page that is nothing but a refused include says why it has no text
    assert str(refused.value) == f"ada/only.rst: include '../secret.rst': {outside}"


def test_transitions_and_block_quotes(tmp_path: Path) -> None:
    text = "Before.\n\n----\n\nAfter.\n\n    A quoted paragraph\n    over two lines.\n"
    assert blocks(tmp_path, text) == [
        ("paragraph", 0, "Before."),
        ("paragraph", 0, "After."),
        ("paragraph", 0, "A quoted paragraph over two lines."),
    ]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "file is empty or whitespace only"),
        (b".. toctree::\n\n   install\n", "no text found"),
        (b"\xff\xfe bad", "not valid UTF-8"),
    ],
)
def test_bad_rst_files(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "ada" / "bad.rst"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(ParseError, match=reason):
        parse_one(path)


def test_malformed_markup_never_fails_the_file(tmp_path: Path) -> None:
    """Unclosed literals, a directive without a body, a title with a short underline, a table missing its end: the
    text still comes through."""
    text = (
        "Unclosed ``literal and *emphasis\n\n.. note::\n\nShort\n--\n\n+-----+\n| a   |\n\n"
        ".. unknown-directive:: arg\n   :opt: 1\n\n   Its content.\n"
    )
    texts = [text for _, _, text in blocks(tmp_path, text)]
    assert "Unclosed ``literal and *emphasis" in texts
    assert "Its content." in texts
    assert any("Short" in t for t in texts)


def test_blocks_nested_thousands_deep_keep_their_text(tmp_path: Path) -> None:
    """A list in a list in a list ... past any real page (a damaged or generated file): the text is kept as
    paragraphs, never a crash of the ingest (Python's recursion limit is about 1,000 frames)."""
    deep = "".join(" " * depth + "- item\n\n" for depth in range(0, 2400, 2)) + "After the list.\n"
    texts = [text for _, _, text in blocks(tmp_path, deep)]
    assert texts[0] == "item" and texts[-1] == "After the list."
    assert sum(text.count("item") for text in texts) == 1200
