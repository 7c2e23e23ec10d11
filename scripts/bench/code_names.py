"""Questions that name code: BM25 with and without a name's whole term (issue 37; `backend/retrieval/sparse.py`).

The tokenizer cuts "generate_series", "os.path.join" and "8.1.0" into words and digits that many texts hold;
`sparse.whole_terms` also indexes each whole. The eval sets' questions are paraphrases, which rarely name code,
so this bench asks the kind of question they leave out: for each set, the code names that occur in exactly one
document, a sample of them asked as "What is <name> for?", each judged to that document. Each set is
indexed twice, with and without the whole terms, and searched in every mode; the figures are MRR@10 per mode.
With the whole terms, hybrid is also measured at each `retrieval.code_bm25_weight` in --code-bm25-weights (BM25's
weight for a question naming code; the default weighs it as any other question).

    .venv/bin/python -m scripts.bench.code_names                       # ~20 min on 2 cores
    .venv/bin/python -m scripts.bench.code_names --sets pgdocs --per-set 40 --code-bm25-weights 1,3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from backend.retrieval import sparse
from backend.retrieval.embedder import get_embedder
from backend.retrieval.models import SearchMode
from backend.retrieval.search import Retriever
from backend.retrieval.stores.edge import EdgeStore
from backend.settings import get_settings
from pipeline.eval_data import load_eval_set
from pipeline.eval_metrics import score_query
from pipeline.eval_sets import SETS
from pipeline.evaluate import documents_by_best_chunk, index_documents
from scripts.bench import benchlib

MODES: tuple[SearchMode, ...] = ("hybrid", "dense", "bm25")


def named_once(documents: list[Any], per_set: int) -> dict[str, str]:
    """Up to `per_set` code names that occur in exactly one document: name -> document id. Spread over the sorted
    names, so that the sample is the same on every run. (Dotted numbers are left out: in a manual most are its own
    section and table numbers, which nobody asks about.)"""
    where: dict[str, set[str]] = defaultdict(set)
    for document in documents:
        text = "\n".join(block.text for block in document.blocks)
        for match in sparse._CODE_NAME.finditer(text):
            where[match[0]].add(document.document_id)
    once = sorted(
        (name, next(iter(ids)))
        for name, ids in where.items()
        if len(ids) == 1 and len(name) >= 4 and sparse.whole_terms(name)  # not an abbreviation ("e.g.")
    )
    step = max(1, len(once) // per_set)
    return dict(once[::step][:per_set])


@contextmanager
def whole_terms_indexed(on: bool) -> Iterator[None]:
    """Within it, BM25 vectors carry whole terms (`on`) or their words alone, as before them."""
    original = sparse.whole_terms
    if not on:
        sparse.whole_terms = lambda text: []  # the module looks it up at each call
    try:
        yield
    finally:
        sparse.whole_terms = original


def measure(
    name: str, per_set: int, *, on: bool, weights: list[float], settings: Any, embedder: Any
) -> tuple[int, dict[str, float]]:
    """MRR@10 per mode, and hybrid's at each code_bm25_weight in `weights` ("hybrid@W")."""
    shipped = SETS[name]
    eval_set = load_eval_set(content=shipped.ensure_content(), queries=shipped.queries, qrels=shipped.qrels)
    asked = named_once(eval_set.documents, per_set)
    with whole_terms_indexed(on), tempfile.TemporaryDirectory(prefix="bench-code-names-") as work:
        store = EdgeStore(Path(work) / "index", hnsw_ef=settings.index.hnsw_ef)
        try:
            retriever = Retriever(embedder=embedder, store=store, settings=settings.retrieval)
            index_documents(eval_set, retriever=retriever, chunking=settings.chunking)

            def mrr(mode: SearchMode) -> float:
                scores = [
                    score_query(
                        documents_by_best_chunk(retriever.search(f"What is {code} for?", k=50, mode=mode)),
                        {document: 1},
                        k=10,
                        deep_k=50,
                    )["mrr@10"]
                    for code, document in asked.items()
                ]
                return statistics.fmean(scores) if scores else 0.0

            figures: dict[str, float] = {mode: mrr(mode) for mode in MODES}
            for weight in weights:
                retriever.settings = settings.retrieval.model_copy(update={"code_bm25_weight": weight})
                figures[f"hybrid@{weight:g}"] = mrr("hybrid")
            return len(asked), figures
        finally:
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="pgdocs,gitdocs,debref,flaskdocs,clickdocs", help="Comma-separated sets.")
    parser.add_argument("--per-set", type=int, default=60, help="Names asked per set (default 60).")
    parser.add_argument(
        "--code-bm25-weights",
        default="1,1.5,3,6",
        help="Hybrid with whole terms is also measured at each of these retrieval.code_bm25_weight values.",
    )
    args = parser.parse_args()
    names = args.sets.split(",")
    unknown = [name for name in names if name not in SETS]
    if unknown:
        raise SystemExit(f"unknown sets {unknown}; known: {', '.join(SETS)}")
    weights = [float(value) for value in args.code_bm25_weights.split(",") if value]
    settings = get_settings()
    embedder = get_embedder(settings.embedding)
    results: dict[str, dict[str, Any]] = {}
    rows = []
    for name in names:
        per_variant = {}
        for on in (False, True):
            print(f"[{name}] whole terms {'on' if on else 'off'}: indexing and searching…", file=sys.stderr, flush=True)
            count, per_variant[on] = measure(
                name, args.per_set, on=on, weights=weights if on else [], settings=settings, embedder=embedder
            )
        results[name] = {"questions": count, "without": per_variant[False], "with": per_variant[True]}
        rows.append(
            [name, count]
            + [f"{per_variant[False][m]:.3f} → {per_variant[True][m]:.3f}" for m in MODES]
            + [f"{per_variant[True][f'hybrid@{w:g}']:.3f}" for w in weights]
        )
    benchlib.print_table(
        'MRR@10 of "What is <name> for?" (a name in one document), without → with whole terms; then hybrid with whole'
        " terms at each code_bm25_weight",
        ["set", "questions", *MODES, *(f"hybrid@{w:g}" for w in weights)],
        rows,
    )
    benchlib.write_results("code-names", results)


if __name__ == "__main__":
    main()
