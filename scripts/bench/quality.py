"""Quality per eval set (issue 37): retrieval per mode and answers, one row a set and the mean across sets.

Retrieval: MRR@10 and nDCG@10 of hybrid, dense and bm25. Answers, through the service with the extractive tier:
fact recall, citation precision, false and missed refusals.

The sets are the shipped ones (`pipeline/eval_sets.py`): demo, pgdocs, gitdocs, handbook, debref, flaskdocs and
clickdocs. A set's corpus is built from its Debian package when it is missing (`scripts/build-eval-pgdocs`,
`scripts/build-eval-debdocs` install the packages). Retrieval goes through `pipeline.evaluate.evaluate` (what
`lorechat eval` runs), answers through `pipeline.eval_answers.run_questions` on a fresh index (what `lorechat
eval-answers` runs); settings are today's (`get_settings()`, i.e. config.yaml and the environment) with the
extractive tier only.

The rule for a quality default (BENCHMARKS.md, "Retrieval quality"): a change is kept only if it raises the mean
and loses more than 0.01 on no set. `--compare OLD.json` applies it against an earlier run's results.

    .venv/bin/python -m scripts.bench.quality                  # every set, retrieval and answers
    .venv/bin/python -m scripts.bench.quality --sets gitdocs,debref --no-answers
    .venv/bin/python -m scripts.bench.quality --compare bench-results/quality-<before>.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from backend.retrieval.embedder import Embedder, get_embedder
from backend.settings import ExtractiveTierSettings, Settings, get_settings
from pipeline.eval_answers import TurnResult, load_questions, run_questions, summarize
from pipeline.eval_answers_cli import indexed_settings
from pipeline.eval_data import EvalSet, load_eval_set
from pipeline.eval_sets import SETS, ShippedSet
from pipeline.evaluate import evaluate
from scripts.bench import benchlib

MODES = ("hybrid", "dense", "bm25")
RETRIEVAL = ("mrr@10", "ndcg@10")
ANSWERS = ("fact_recall", "citation_precision", "false_refusal_rate", "missed_refusal_rate")
# Figures where lower is better (the rule's "loses" is a rise for these).
LOWER_IS_BETTER = {"false_refusal_rate", "missed_refusal_rate"}
TOLERANCE = 0.01


def extractive_only(settings: Settings) -> Settings:
    """Today's settings answering with the extractive tier alone (the tier the answer figures are of)."""
    return settings.model_copy(
        update={"llm": settings.llm.model_copy(update={"tiers": [ExtractiveTierSettings(name="extractive")]})}
    )


def keeps(gains: dict[str, float]) -> bool:
    """The rule: the mean gain is positive and no set loses more than TOLERANCE."""
    return statistics.fmean(gains.values()) > 0 and min(gains.values()) >= -TOLERANCE


def retrieval(shipped: ShippedSet, settings: Settings, embedder: Embedder) -> dict[str, Any]:
    eval_set = load_eval_set(content=shipped.ensure_content(), queries=shipped.queries, qrels=shipped.qrels)
    return retrieval_scores(eval_set, settings, embedder)


def retrieval_scores(eval_set: EvalSet, settings: Settings, embedder: Embedder) -> dict[str, Any]:
    """Every mode's MRR@10 and nDCG@10 on a fresh index of `eval_set`, with `settings`' chunking and retrieval."""
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as work:
        report = evaluate(
            eval_set,
            embedder=embedder,
            chunking=settings.chunking,
            retrieval=settings.retrieval,
            hnsw_ef=settings.index.hnsw_ef,
            work_dir=Path(work),
        )
    return {
        "documents": report.documents,
        "chunks": report.chunks,
        "queries": report.queries,
        "index_seconds": round(report.index_seconds, 1),
        "scores": {mode: {m: round(report.scores[mode][m], 4) for m in RETRIEVAL} for mode in MODES},
    }


def answers(shipped: ShippedSet, settings: Settings) -> dict[str, Any] | None:
    if shipped.answers is None:
        return None
    questions = load_questions(shipped.answers)
    work = Path(tempfile.mkdtemp(prefix="bench-quality-answers-"))
    try:
        started = time.perf_counter()
        evaluated = indexed_settings(settings, shipped.ensure_content(), work)
        results = anyio.run(lambda: run_questions(evaluated, questions))
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)
    tiers = summarize(results)
    figures = tiers.get("extractive", {})
    return {
        "turns": len(results),
        "unanswerable": sum(1 for r in results if r.unanswerable),
        "errors": sum(1 for r in results if r.error),
        "seconds": round(seconds, 1),
        **{name: round(figures.get(name, 0.0), 4) for name in ANSWERS},
        # Every turn's outcome, for reading the misses.
        "misses": [
            {
                "id": r.id,
                "question": r.question,
                "unanswered": r.unanswered,
                "facts_found": r.facts_found,
                "facts": len(r.facts),
                "answer": r.answer[:400],
            }
            for r in results
            if missed(r)
        ],
    }


def missed(result: TurnResult) -> bool:
    """A turn that lost points: an unanswerable one answered, or an answerable one refused or short of a fact."""
    if result.unanswerable:
        return not result.unanswered
    return bool(result.unanswered or result.facts_found < len(result.facts))


def flatten(row: dict[str, Any]) -> dict[str, float]:
    """One set's figures as `name -> value`: retrieval per mode and metric, then the answer figures."""
    out = {f"{mode} {m}": row["retrieval"]["scores"][mode][m] for mode in MODES for m in RETRIEVAL}
    if row.get("answers"):
        out.update({name: row["answers"][name] for name in ANSWERS})
    return out


def means(rows: dict[str, dict[str, Any]]) -> dict[str, float]:
    flat = [flatten(row) for row in rows.values()]
    names = {name for figures in flat for name in figures}
    return {name: round(statistics.fmean(f[name] for f in flat if name in f), 4) for name in sorted(names)}


def compare(before: dict[str, Any], after: dict[str, dict[str, Any]]) -> list[list[Any]]:
    """The rule, per figure: the mean must rise and no set may lose more than TOLERANCE (leave-one-set-out)."""
    old_rows = before["sets"]
    shared = [name for name in after if name in old_rows]
    table = []
    for name in flatten(next(iter(after.values()))):
        pairs = {
            s: (flatten(old_rows[s])[name], flatten(after[s])[name])
            for s in shared
            if name in flatten(after[s]) and name in flatten(old_rows[s])
        }
        if not pairs:
            continue
        sign = -1 if name in LOWER_IS_BETTER else 1
        gains = {s: sign * (new - old) + 0.0 for s, (old, new) in pairs.items()}
        mean_gain = statistics.fmean(gains.values())
        worst_set, worst = min(gains.items(), key=lambda item: item[1])
        if all(abs(gain) < 1e-9 for gain in gains.values()):
            verdict = "same"
        else:
            verdict = "keep" if keeps(gains) else "reject"
        table.append([name, f"{mean_gain:+.4f}", f"{worst:+.4f} ({worst_set})", verdict])
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sets", default="demo,pgdocs,gitdocs,handbook,debref,flaskdocs,clickdocs", help="Comma-separated set names."
    )
    parser.add_argument("--no-answers", action="store_true", help="Retrieval only.")
    parser.add_argument("--compare", type=Path, help="An earlier bench-results/quality-*.json: apply the rule.")
    args = parser.parse_args()
    unknown = [name for name in args.sets.split(",") if name not in SETS]
    if unknown:
        raise SystemExit(f"unknown sets {unknown}; known: {', '.join(SETS)}")
    settings = extractive_only(get_settings())
    embedder = get_embedder(settings.embedding)
    rows: dict[str, dict[str, Any]] = {}
    for name in args.sets.split(","):
        shipped = SETS[name]
        print(f"[{name}] retrieval…", file=sys.stderr, flush=True)
        row: dict[str, Any] = {"kind": shipped.kind, "retrieval": retrieval(shipped, settings, embedder)}
        if not args.no_answers:
            print(f"[{name}] answers…", file=sys.stderr, flush=True)
            row["answers"] = answers(shipped, settings)
        rows[name] = row
        print(f"[{name}] {json.dumps({k: v for k, v in flatten(row).items()})}", file=sys.stderr, flush=True)

    table = []
    for name, row in rows.items():
        r, a = row["retrieval"], row.get("answers")
        cells = [name, r["documents"], r["chunks"], r["queries"]]
        cells += [f"{r['scores'][mode][m]:.3f}" for mode in MODES for m in RETRIEVAL]
        cells += [a["turns"], *(f"{a[n]:.3f}" for n in ANSWERS)] if a else ["—"] * (1 + len(ANSWERS))
        table.append(cells)
    mean = means(rows)
    table.append(
        ["mean", "", "", "", *(f"{mean[f'{mode} {m}']:.3f}" for mode in MODES for m in RETRIEVAL)]
        + (["", *(f"{mean[n]:.3f}" for n in ANSWERS)] if all(n in mean for n in ANSWERS) else ["—"] * 5)
    )
    headers = ["set", "docs", "chunks", "queries"]
    headers += [f"{mode} {'MRR' if m == 'mrr@10' else 'nDCG'}" for mode in MODES for m in RETRIEVAL]
    headers += ["turns", "fact recall", "citation prec.", "false refusals", "missed refusals"]
    benchlib.print_table(
        f"Quality per set (MRR@10, nDCG@10; answers with the extractive tier), embedder {embedder.embedder_id}",
        headers,
        table,
    )
    if args.compare:
        before = json.loads(args.compare.read_text(encoding="utf-8"))
        benchlib.print_table(
            f"The rule against {args.compare.name}: keep only if the mean rises and no set loses more than "
            f"{TOLERANCE} (rates of refusals: lower is better)",
            ["figure", "mean change", "worst set", "verdict"],
            compare(before, rows),
        )
    benchlib.write_results("quality", {"embedder": embedder.embedder_id, "sets": rows, "mean": mean})


if __name__ == "__main__":
    main()
