"""`lorechat eval-answers`: answer quality per tier on a question set, through the real service path."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import anyio
import click
from rich.console import Console
from rich.table import Table

from backend.settings import DatabaseSettings, RedisSettings, Settings, get_settings
from pipeline.terminal import dumps, markup


def indexed_settings(settings: Settings, content: Path, work: Path) -> Settings:
    """`settings` with a fresh data dir under `work` holding `content` ingested, its own SQLite and no Redis, so
    an evaluation never touches the real index, conversations or rate limits."""
    from backend.retrieval.embedder import get_embedder
    from backend.retrieval.search import Retriever
    from backend.retrieval.stores import open_store
    from pipeline.indexer import Indexer

    evaluated = settings.model_copy(
        update={"data_dir": work / "data", "database": DatabaseSettings(), "redis": RedisSettings()}
    )
    evaluated.data_dir.mkdir(parents=True)
    store = open_store(evaluated)
    try:
        retriever = Retriever(embedder=get_embedder(evaluated.embedding), store=store, settings=evaluated.retrieval)
        report = Indexer.from_settings(evaluated, retriever).ingest([content])
    finally:
        store.close()  # the service opens the index itself
    if report.failed:
        raise click.ClickException(f"{len(report.failed)} files of {content} could not be ingested")
    return evaluated


@click.command("eval-answers")
@click.option(
    "--questions",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON lines: question, creator?, facts (regexes) or unanswerable: true, follow_up?.",
)
@click.option(
    "--content",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("examples/content"),
    show_default=True,
    help="Creator folders, ingested into a temporary index for the run (the real index is not touched).",
)
@click.option(
    "--personality-weight", type=click.FloatRange(0, 1), default=0.0, show_default=True, help="The voice dial."
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures (and every turn) as JSON on stdout.")
def eval_answers(questions: Path, content: Path, personality_weight: float, as_json: bool) -> None:
    """Run every question through the service with the configured tiers and report, per tier that answered:
    fact recall, citation precision, unsupported-claim rate, false and missed refusals, TTFT p50/p99.

        lorechat eval-answers --questions examples/eval/answers.jsonl
    """
    from pipeline.eval_answers import TurnResult, load_questions, run_questions, summarize, turn_count

    err = Console(stderr=True, highlight=False)
    loaded = load_questions(questions)
    work = Path(tempfile.mkdtemp(prefix="lorechat-eval-answers-"))
    try:
        err.print(f"Indexing {markup(content)} into a temporary store…")
        settings = indexed_settings(get_settings(), content, work)
        total = turn_count(loaded)
        err.print(f"Asking {len(loaded)} questions ({total} turns with their follow-ups)…")
        done = 0

        def progress(result: TurnResult) -> None:
            nonlocal done
            done += 1
            answered = "unanswered" if result.unanswered else (result.error or result.tier or "?")
            err.print(f"  [{done}/{total}] {markup(result.id)}: {markup(answered)}", highlight=False)

        results = anyio.run(
            lambda: run_questions(settings, loaded, personality_weight=personality_weight, on_turn=progress)
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = summarize(results)
    if as_json:
        turns = [
            {"id": r.id, "tier": r.tier, "unanswered": r.unanswered, "facts_found": r.facts_found, "answer": r.answer}
            for r in results
        ]
        click.echo(dumps({"tiers": report, "turns": turns}))
        return
    table = Table(title=f"{len(results)} turns from {markup(questions)}")
    columns = next(iter(report.values()), {})
    table.add_column("tier")
    for name in columns:
        table.add_column(name, justify="right")
    for tier, row in report.items():
        table.add_row(
            markup(tier), *(f"{value:.3f}" if isinstance(value, float) else str(value) for value in row.values())
        )
    # Piped to a file, rich would fit the table to 80 columns and cut every header short.
    Console(highlight=False, width=None if sys.stdout.isatty() else 200).print(table)
