"""`lorechat answers`: curated answers (served first when a question fits one of their phrasings) and the starter
questions the widget offers; the same SQL the dashboard writes, so every running replica sees a change within a
second (docs/curation.md, "Curated answers")."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from backend.errors import ErrorCode, LorechatError
from backend.settings import get_settings
from pipeline.terminal import dumps, safe

if TYPE_CHECKING:
    from backend.curation.answers_store import AnswerVersion, CuratedView


def answer_json(answer: CuratedView) -> dict[str, Any]:
    return {
        "id": answer.id,
        "creator": answer.creator,
        "status": answer.status,
        "version": answer.version,
        "questions": answer.questions,
        "answer": answer.answer,
        "documents": answer.documents,
        "topic_id": answer.topic_id,
        "uses": answer.uses,
        "up": answer.up,
        "down": answer.down,
        "created_at": answer.created_at.isoformat(),
        "updated_at": answer.updated_at.isoformat(),
        "retired_at": answer.retired_at.isoformat() if answer.retired_at else None,
        "history": [_version_json(v) for v in answer.history],
    }


def _version_json(version: AnswerVersion) -> dict[str, Any]:
    return {
        "version": version.version,
        "questions": version.questions,
        "answer": version.answer,
        "documents": version.documents,
        "created_at": version.created_at.isoformat(),
    }


def _read_answer(path: Path) -> str:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}", param_hint="--answer-file") from exc
    return text


def _check_creator(slug: str) -> None:
    from pipeline.catalog_update import read_catalog
    from pipeline.curator_db import OwnEngine

    settings = get_settings()
    if read_catalog(OwnEngine(settings), settings.data_dir).creator(slug) is None:
        raise LorechatError(ErrorCode.unknown_creator, f"unknown creator '{slug}' (ingest its content first)")


def _run(work: Any) -> Any:
    from pipeline.curator_db import with_sessions

    return with_sessions(get_settings(), work)


def _print(answer: CuratedView, *, full: bool = False) -> None:
    # Questions and answers are curators' (or visitors') text: printed inert (C1).
    who = answer.creator or "(all creators)"
    click.echo(
        f"{safe(answer.id)}  {safe(who)}  v{answer.version}  {answer.status}  served {answer.uses}×  "
        f"👍 {answer.up}  👎 {answer.down}"
    )
    for question in answer.questions:
        click.echo(f"    ? {safe(question)}")
    if full:
        click.echo(f"    {safe(answer.answer)}")
        for document in answer.documents:
            click.echo(f"    source: {safe(document)}")
        for version in answer.history:
            click.echo(f"    earlier v{version.version}: {safe(version.answer)}")


@click.group()
def answers() -> None:
    """Curated answers: an answer a curator wrote, with the questions it answers (its phrasings), served first to a
    visitor whose question fits one of them, with its documents as sources. Retired answers are kept, never served."""


@answers.command("add")
@click.option("--creator", metavar="SLUG", help="The creator whose visitors get it.")
@click.option("--all-creators", is_flag=True, help="Serve it for every creator (and questions asked without one).")
@click.option("--question", "questions", multiple=True, required=True, help="A question it answers (repeatable).")
@click.option(
    "--answer-file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True), required=True,
    help="A file holding the answer (- reads stdin).",
)  # fmt: skip
@click.option("--source", "sources", multiple=True, metavar="DOC_ID", help="A document it rests on (repeatable).")
@click.option("--topic", metavar="ID", help="The gap topic it answers (marked answered).")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def add(
    creator: str | None,
    all_creators: bool,
    questions: tuple[str, ...],
    answer_file: Path,
    sources: tuple[str, ...],
    topic: str | None,
    as_json: bool,
) -> None:
    """Write a curated answer."""
    from backend.curation import answers_store
    from backend.ids import require_id

    if (creator is None) == (not all_creators):
        raise click.UsageError("give exactly one of --creator SLUG or --all-creators")
    if creator is not None:
        _check_creator(creator)
    topic_id = require_id(topic, what="gap topic") if topic else None
    text = _read_answer(answer_file)
    written = _run(
        lambda sessions: answers_store.add_answer(
            sessions, creator=creator, questions=list(questions), answer=text, documents=list(sources),
            topic_id=topic_id,
        )
    )  # fmt: skip
    if as_json:
        click.echo(dumps(answer_json(written)))
    else:
        click.echo(written.id)
        click.echo("Served from now on to the questions that fit it (servers see it within a second).", err=True)


@answers.command("list")
@click.option("--creator", metavar="SLUG", help="Only this creator's answers.")
@click.option("--all", "include_retired", is_flag=True, help="Include retired answers.")
@click.option("--json", "as_json", is_flag=True, help="Print the answers as a JSON array.")
def list_answers(creator: str | None, include_retired: bool, as_json: bool) -> None:
    """Curated answers, most recently changed first, with how often each was served and its 👍/👎."""
    from backend.curation import answers_store

    found = _run(
        lambda sessions: answers_store.list_answers(sessions, creator=creator, include_retired=include_retired)
    )
    if as_json:
        click.echo(dumps([answer_json(answer) for answer in found]))
        return
    if not found:
        click.echo("No curated answers.", err=True)
    for answer in found:
        _print(answer)


def _get(answer_id: str) -> CuratedView:
    from backend.curation import answers_store
    from backend.ids import require_id

    answer_id = require_id(answer_id, what="curated answer")
    found = _run(lambda sessions: answers_store.get_answer(sessions, answer_id=answer_id))
    if found is None:
        raise LorechatError(ErrorCode.not_found, f"no curated answer '{answer_id}'")
    return found


@answers.command("show")
@click.argument("answer_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def show(answer_id: str, as_json: bool) -> None:
    """One curated answer, with its earlier versions."""
    found = _get(answer_id)
    if as_json:
        click.echo(dumps(answer_json(found)))
    else:
        _print(found, full=True)


@answers.command("edit")
@click.argument("answer_id", metavar="ID")
@click.option("--question", "questions", multiple=True, help="The questions it answers, replacing them (repeatable).")
@click.option(
    "--answer-file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    help="A file holding the new answer (- reads stdin).",
)  # fmt: skip
@click.option("--source", "sources", multiple=True, metavar="DOC_ID", help="Its documents, replacing them.")
@click.option("--no-sources", is_flag=True, help="It rests on no document any more.")
@click.option("--json", "as_json", is_flag=True, help="Print the new version as JSON.")
def edit(
    answer_id: str,
    questions: tuple[str, ...],
    answer_file: Path | None,
    sources: tuple[str, ...],
    no_sources: bool,
    as_json: bool,
) -> None:
    """A new version of a curated answer (the old one is kept); what is not given stays as it was."""
    from backend.curation import answers_store
    from backend.ids import require_id

    if sources and no_sources:
        raise click.UsageError("give --source or --no-sources, not both")
    if not (questions or answer_file or sources or no_sources):
        raise click.UsageError("nothing to change: give --question, --answer-file, --source or --no-sources")
    answer_id = require_id(answer_id, what="curated answer")
    text = _read_answer(answer_file) if answer_file is not None else None
    documents = [] if no_sources else list(sources) if sources else None
    written = _run(
        lambda sessions: answers_store.edit_answer(
            sessions, answer_id=answer_id, questions=list(questions) or None, answer=text, documents=documents
        )
    )
    if as_json:
        click.echo(dumps(answer_json(written)))
    else:
        click.echo(f"{safe(written.id)} is at version {written.version}.", err=True)


@answers.command("retire")
@click.argument("answer_id", metavar="ID")
def retire(answer_id: str) -> None:
    """Stop serving a curated answer, on every replica at once (it is kept for the record)."""
    from backend.curation import answers_store
    from backend.ids import require_id

    answer_id = require_id(answer_id, what="curated answer")
    if not _run(lambda sessions: answers_store.retire_answer(sessions, answer_id=answer_id)):
        raise LorechatError(ErrorCode.not_found, f"no active curated answer '{answer_id}'")
    click.echo(f"Retired {answer_id}: no longer served; its gap topic is back in the inbox.", err=True)


@answers.group("starters")
def starters() -> None:
    """The questions the widget offers before the first one (up to four), per creator and/or site; without any set,
    the most asked questions that were answered well (👍, no unsupported claim) are offered."""


@starters.command("set")
@click.option("--creator", metavar="SLUG", help="For this creator (default: any).")
@click.option("--site", metavar="NAME", help="For this site (default: any).")
@click.option("--question", "questions", multiple=True, required=True, help="A starter question (up to four).")
def starters_set(creator: str | None, site: str | None, questions: tuple[str, ...]) -> None:
    from backend.curation import answers_store

    if creator is not None:
        _check_creator(creator)
    saved = _run(
        lambda sessions: answers_store.set_starters(sessions, creator=creator, site=site, questions=list(questions))
    )
    click.echo(f"{len(saved)} starter questions saved.", err=True)


@starters.command("clear")
@click.option("--creator", metavar="SLUG", help="The creator's set (default: any).")
@click.option("--site", metavar="NAME", help="The site's set (default: any).")
def starters_clear(creator: str | None, site: str | None) -> None:
    from backend.curation import answers_store

    _run(lambda sessions: answers_store.set_starters(sessions, creator=creator, site=site, questions=[]))
    click.echo("Starter questions removed.", err=True)


@starters.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the sets as a JSON array.")
def starters_list(as_json: bool) -> None:
    from backend.curation import answers_store

    sets = _run(answers_store.list_starters)
    if as_json:
        click.echo(dumps([{"creator": s.creator, "site": s.site, "questions": s.questions} for s in sets]))
        return
    if not sets:
        click.echo("No starter questions set.", err=True)
    for found in sets:
        click.echo(f"{safe(found.creator or '(any creator)')}  {safe(found.site or '(any site)')}")
        for question in found.questions:
            click.echo(f"    {safe(question)}")
