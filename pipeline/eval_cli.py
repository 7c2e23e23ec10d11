"""`lorechat eval`: retrieval quality of bm25, dense and hybrid side by side on a BEIR-format evaluation set."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from backend.settings import get_settings
from pipeline.terminal import dumps, markup

_existing_file = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("eval")
@click.option("--corpus", type=_existing_file, help='BEIR corpus.jsonl: lines of {"_id", "title", "text"}.')
@click.option(
    "--content",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A folder of creator folders to use as the corpus instead (document ids as ingest assigns them).",
)
@click.option("--queries", required=True, type=_existing_file, help='BEIR queries.jsonl: {"_id", "text"}.')
@click.option("--qrels", required=True, type=_existing_file, help="TSV with header query-id, corpus-id, score.")
@click.option(
    "--k", "k", type=click.IntRange(1, 100), default=10, show_default=True, help="Cut-off for nDCG/Recall/MRR."
)
@click.option(
    "--backend",
    type=click.Choice(["torch", "onnx", "onnx-int8"]),
    default=None,
    help="Embedding backend to evaluate (default: embedding.backend from settings).",
)
@click.option(
    "--repeats",
    type=click.IntRange(1, 100),
    default=1,
    show_default=True,
    help="Rank every query this many times and average (rankings are deterministic; for experiments).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the scores as one JSON object on stdout.")
@click.option("--per-query", is_flag=True, help="With --json: include every query's scores.")
def eval_command(
    corpus: Path | None,
    content: Path | None,
    queries: Path,
    qrels: Path,
    k: int,
    backend: str | None,
    repeats: int,
    as_json: bool,
    per_query: bool,
) -> None:
    """Score retrieval on an evaluation set, indexed into a temporary store (the real index is not touched).

    A document longer than one chunk is ranked by its best chunk. Example, on the shipped demo set:

        lorechat eval --content examples/content --queries examples/eval/queries.jsonl --qrels examples/eval/qrels.tsv
    """
    from backend.retrieval.embedder import get_embedder
    from pipeline.eval_data import load_eval_set
    from pipeline.evaluate import evaluate

    if (corpus is None) == (content is None):
        raise click.UsageError("give exactly one of --corpus FILE or --content DIR")
    if per_query and not as_json:
        raise click.UsageError("--per-query needs --json")
    settings = get_settings()
    embedding = settings.embedding.model_copy(update={"backend": backend}) if backend else settings.embedding
    eval_set = load_eval_set(corpus=corpus, content=content, queries=queries, qrels=qrels)
    err = Console(stderr=True, highlight=False)
    err.print(f"Indexing {len(eval_set.documents)} documents into a temporary store ({markup(embedding.backend)})…")
    embedder = get_embedder(embedding)
    with tempfile.TemporaryDirectory(prefix="lorechat-eval-") as work:
        report = evaluate(
            eval_set,
            embedder=embedder,
            chunking=settings.chunking,
            retrieval=settings.retrieval,
            hnsw_ef=settings.index.hnsw_ef,
            k=k,
            repeats=repeats,
            work_dir=Path(work),
        )
    if as_json:
        click.echo(dumps(report.as_json(per_query=per_query)))
        return
    print_table(Console(highlight=False), report.scores, title=markup(_title(report)))
    if not report.queries:
        err.print("No query has a relevant document in the qrels: nothing was scored.")
        sys.exit(1)


def _title(report: Any) -> str:
    return (
        f"{report.queries} queries, {report.documents} documents, {report.chunks} chunks, embedder {report.embedder_id}"
    )


def print_table(console: Console, scores: dict[str, dict[str, float]], *, title: str) -> None:
    """One row per retriever, one column per metric; the best value of each column in bold."""
    table = Table(title=title)
    metrics = list(next(iter(scores.values()), {}))
    table.add_column("retriever")
    for name in metrics:
        table.add_column(name, justify="right")
    best = {name: max(row[name] for row in scores.values()) for name in metrics}
    for mode, row in scores.items():
        cells = [f"[bold]{row[n]:.4f}[/]" if row[n] == best[n] else f"{row[n]:.4f}" for n in metrics]
        table.add_row(markup(mode), *cells)
    console.print(table)
