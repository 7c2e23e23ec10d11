"""How a line set between a chunk's sentences reads (quotable.py reads the sentences around it): code (a command at
its prompt or not, a statement, a signature, a configuration line, a program's lines), a term line a sentence after
it defines (an option's spellings, a definition list's term, a signature of any length), or an example set on its own
(a shell session, a program) whose commands are quoted without what they printed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Code in a sentence or a term line: an option (-n, --force), a dotted or slashed name (clean.requireForce,
# /etc/hosts), a placeholder (<branch>), an assignment (key=value), a call (f()), a manual page (script(1)), an
# environment variable (GIT_DIR), an identifier in snake case (deadlock_timeout, gen_random_uuid).
CODE_TOKEN = re.compile(
    r"(?:^|[\s(\[\"'`,])-{1,2}[A-Za-z][\w-]*|\w[./=][\w<]|/\w|<\w[\w-]*>|\w\(\)|\w\([1-9]\w{0,3}\)|\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b|`[^`]+`"
    r"|\b[a-z][a-z0-9]*_[a-z0-9_]*[a-z0-9]\b"
)
# A function called or declared, up to what it returns: "gen_random_uuid () ", "setval ( regclass, bigint ) ".
_CALL = r"\w\s*\([^()]*\)\s*"
# A manual page's sections and a note's kinds are headings in capitals, not keywords.
_SECTIONS = (
    "SYNOPSIS|DESCRIPTION|OPTIONS|EXAMPLES?|NOTES?|NAME|SEE ALSO|BUGS|AUTHORS?|FILES|ENVIRONMENT|CONFIGURATION|"
    "DISCUSSION|HISTORY|COMMANDS|EXIT STATUS|RETURN VALUES?|WARNING|CAUTION|TIP|IMPORTANT"
)
# A term line: code, a shell command line (pipes, redirections, a prompt), one lower-case word (a command or a
# package in a table's first cell), a function's signature ("setval ( regclass, bigint ) → bigint", "abs(x)"), a
# header's or field's name ("X-Frame-Options", "Start-LSN"), or a keyword in capitals (a statement's parameter:
# "CONCURRENTLY", "RESTART IDENTITY"; not a manual page's section).
_TERM_LINE = re.compile(
    CODE_TOKEN.pattern
    + rf"|[|&<>~*{{}}]|^\$ |^[a-z][\w+-]*$|{_CALL}(?:→|->)|^[A-Za-z_][\w.]*\([^()]*\)$|^[A-Z]\w*(?:-[A-Z0-9]\w*)+$"
    + rf"|^(?!(?:{_SECTIONS})$)[A-Z]{{2,}}(?: [A-Z]{{2,}}){{0,2}}$"
)
# A command with its arguments: a lower-case word and up to five more ("apt-cache policy nano").
_COMMAND = re.compile(r"^[a-z][\w.+-]*(?: \S+){0,5}$")
# A configuration file's section header or assignment ("[user]", "signingKey = <key-id>"): code as a command is.
_CONFIG_LINE = re.compile(r"^\[[\w .\"-]+\]$|^[\w.-]+ ?= ?\S")
# A command at a root shell's prompt ("# dpkg-reconfigure locales"), as "$ " opens one at a user's.
_ROOT_PROMPT = re.compile(r"^# [a-z][\w.+-]*(?: \S+){0,5}$")
# A literal value on a line of its own ("1", "off", "t").
_LITERAL = re.compile(r"^[\w.+-]{1,20}$")
# A statement of a query or programming language ("ALTER DATABASE mydb SET geqo TO off;", "x = f(y);"), or a
# function's signature ("gen_random_uuid () → uuid", "nextval ( regclass ) → bigint"): code on a line of its own.
_STATEMENT = re.compile(rf";$|{_CALL}(?:→|->|$)")
# A sentence that introduces what follows it: the code lines after it belong to it.
INTRODUCES = re.compile(r":$|\b(?:the following|as follows)\b[^.]*[.:]$|\bfor (?:example|instance)$", re.IGNORECASE)


# A numbered heading's number ("37.11. collation_character_set_applicability"): not part of the term it names.
_SECTION_NUMBER = re.compile(r"^(?:\d+\.)+\d*\s+(?=\S)")
MAX_LABEL_LINES = 4  # more term lines in a row are a code block, not the terms of a definition
_MAX_TERM_CHARS = 100
# A code block a sentence introduces: at most this many code lines, and as many comments besides.
_MAX_CODE_LINES = 2 * MAX_LABEL_LINES
_COMMENT_LINE = re.compile(r"^(?:#+|--|//) \S")
# A name on a line of its own: dotted ("flask.template_rendered"), in snake or constant case ("SESSION_COOKIE_SECURE"),
# or a signature without spaces ("flask.abort(code)").
NAME_LINE = re.compile(r"^[A-Za-z_]\w*(?:\.\w+)+(?:\([^()\s]*\))?$|^[A-Za-z]\w*_\w+$")


# An API reference entry's signature, however many parameters it lists: "click.version_option(version=None,
# *param_decls, package_name=None, prog_name=None, message=None, **kwargs)", "class flask.Flask(import_name, ...)",
# "subprocess.run(args, *, stdin=None, ...) -> CompletedProcess". The name of what its description describes.
_SIGNATURE = re.compile(
    r"^(?:(?:class|exception|async|abstract|classmethod|staticmethod|property|method|function|coroutine|await)\s+)*"
    r"[A-Za-z_][\w.]*\((?:[^()]|\([^()]*\))*\)(?:\s*(?:→|->)\s*\S.*)?$"
)
_MAX_SIGNATURE_CHARS = 400


def is_term_line(line: str) -> bool:
    """Short, with code in it, and no closing punctuation: "-u, --include-untracked", "submodule.<name>.path"; or a
    signature of any length."""
    if len(line) > _MAX_TERM_CHARS:
        return len(line) <= _MAX_SIGNATURE_CHARS and _SIGNATURE.match(line) is not None
    return (
        not line.endswith((".", "!", "?", ":", ";"))  # a statement ("SELECT ... FROM pg_roles;") defines nothing
        and bool(_TERM_LINE.search(line))
    )


# An import statement names no term: the lines around it are a program's.
_IMPORT = re.compile(r"^(?:from [\w.]+ )?import [\w.]+(?:\s+as\s+\w+)?(?:\s*,\s*[\w.]+(?:\s+as\s+\w+)?)*$")


def _is_example(lines: Sequence[str]) -> bool:
    """A program's lines ("from hello import create_app", "application = create_app()") or a shell session's (a
    command at its prompt, then what it printed): an example, never the terms the sentence after it defines."""
    return any(_IMPORT.match(line) or line.startswith("$ ") for line in lines)


def example_code(gap: str) -> str:
    """The code of an example set on its own between sentences (`$ dpkg --get-selections >pkg-list` after "First,
    retrieve the list of packages installed ..."), as it is quoted; else "" (not an example, see _is_example)."""
    lines = [" ".join(line.split()) for line in gap.splitlines() if line.strip()]
    if not lines or not _is_example(lines):
        return ""
    code = code_after(gap)
    if not code and lines[0].startswith(("$ ", "# ")):
        # A shell session: its commands and their comments, without what they printed.
        commands = [line for line in lines if line.startswith(("$ ", "# ")) and len(line) <= _MAX_TERM_CHARS]
        code = "\n".join(commands) if len(commands) <= _MAX_CODE_LINES else ""
    return code


def code_names(text: str) -> set[str]:
    """The code a text names: its options, paths, identifiers ("-w", "--processes", "os.path")."""
    return {m[0].strip(" \t([\"'`,") for m in CODE_TOKEN.finditer(text)}


def term_lines(gap: str) -> list[str] | None:
    """The lines just before a sentence that it defines: short lines with code in them (a definition list's
    terms, an option's spellings). [] when a plain heading comes last; None when there are no lines at all."""
    lines = [_SECTION_NUMBER.sub("", " ".join(line.split())) for line in gap.splitlines() if line.strip()]
    if not lines:
        return None
    if _is_example(lines):
        return []
    terms: list[str] = []
    for line in reversed(lines):
        if not is_term_line(line):
            break
        terms.insert(0, line)
    if len(terms) < len(lines) and INTRODUCES.search(lines[-len(terms) - 1]):
        return []  # code a sentence introduced ("run this:"), not terms being defined
    return terms if len(terms) <= MAX_LABEL_LINES else []


# A compound statement's header ("if 'db' not in g:", "for rule in rules:", "with app.app_context():"): on an indented
# line it is a line of a code block, not a sentence going on after the code before it.
BLOCK_HEADER = re.compile(r"^(?:if|elif|else|for|while|with|try|except|finally|async|def|class)\b.*:$")


def _is_code_line(line: str) -> bool:
    """A term, a command (at a prompt or not), a statement or signature, or a line of a configuration file."""
    if _TERM_LINE.search(line) or BLOCK_HEADER.match(line):
        return True
    return bool(_STATEMENT.search(line)) or any(
        pattern.match(line) for pattern in (_COMMAND, _CONFIG_LINE, _ROOT_PROMPT)
    )


def code_after(gap: str) -> str:
    """The code lines a sentence ending in a colon introduces (up to the next sentence), or "". Comment lines ("##
    Update dpkg's selections", "-- relies on ...") are code among code, not headings."""
    lines = [" ".join(line.split()) for line in gap.splitlines() if line.strip()]
    prompt = next((at for at, line in enumerate(lines) if line.startswith("$ ")), None)
    if prompt is None:
        return _code(lines)
    # A shell session, after the program it runs when there is one ("@click.command()" ... then "$ hello" and what
    # it printed): the program's code and the session's commands.
    program = _code(lines[:prompt]) if prompt else ""
    commands = _commands(lines[prompt:])
    if (prompt and not program) or not commands or program.endswith("…"):
        return program
    quoted = [*program.splitlines(), *commands.splitlines()]
    return "\n".join(quoted if len(quoted) <= _MAX_CODE_LINES else [*quoted[:_MAX_CODE_LINES], "…"])


def _code(lines: Sequence[str]) -> str:
    """`code_after` for lines with no shell prompt among them."""
    if not lines:
        return ""
    if len(lines) > _MAX_CODE_LINES and all(
        len(line) <= _MAX_TERM_CHARS and (_is_code_line(line) or _COMMENT_LINE.match(line)) for line in lines
    ):
        # A longer block of code: its opening lines, the way in (a function's signature and its first statements).
        return "\n".join([*lines[:_MAX_CODE_LINES], "…"])
    if len(lines) > 2 * _MAX_CODE_LINES:
        return ""
    if len(lines) >= 2 and all(_LITERAL.match(line) for line in lines):
        return "\n".join(lines)  # values, one a line ("true", "yes", "1": what a type accepts)
    comments = [bool(_COMMENT_LINE.match(line)) and not _is_code_line(line) for line in lines]
    if all(comments) or len(lines) - sum(comments) > _MAX_CODE_LINES:
        return ""
    if any(
        len(line) > _MAX_TERM_CHARS or not (comment or _is_code_line(line))
        for line, comment in zip(lines, comments, strict=True)
    ):
        return ""
    return "\n".join(lines)


def _commands(lines: Sequence[str]) -> str:
    """A shell session's code: its commands at their prompt, each with the lines it goes on to past a "\\", without
    what they printed (`$ python -c '...'` then a key it printed: the command); "" past eight commands or a long one."""
    commands: list[str] = []
    going_on = False
    for line in lines:
        if line.startswith("$ ") or going_on:
            commands.append(line)
            going_on = line.endswith("\\")
    if len(commands) > _MAX_CODE_LINES or any(len(command) > _MAX_TERM_CHARS for command in commands):
        return ""
    return "\n".join(commands)
