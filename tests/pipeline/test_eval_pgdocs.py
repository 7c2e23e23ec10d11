"""The PostgreSQL-manual eval set (issues 15 and 37): the corpus is built in the run from the Debian package, the
committed questions, judgements and answer set must match it, and retrieval and the offline answerer must stay above
their floors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.eval_data import load_qrels, load_queries, load_query_creators
from pipeline.eval_pgdocs import DEFAULT_HTML, PARTS, build
from tests.conftest import REPO
from tests.pipeline.answer_set_checks import check_answer_floors, check_answer_set

PGDOCS = REPO / "examples" / "eval" / "pgdocs"

# Measured on this set (ONNX fp32 default backend, default settings; BENCHMARKS.md, "Retrieval quality"): nDCG@10
# and MRR@10 minus 0.02, as every set's floors are (tests/pipeline/test_eval_debdocs.py); Recall@10 minus 0.05.
FLOORS = {
    "bm25": {"ndcg@10": 0.83, "recall@10": 0.91, "mrr@10": 0.80},
    "dense": {"ndcg@10": 0.82, "recall@10": 0.92, "mrr@10": 0.79},
    "hybrid": {"ndcg@10": 0.90, "recall@10": 0.93, "mrr@10": 0.89},
}

# The extractive tier on the answer set (BENCHMARKS.md, "Answer quality", AMD EPYC with AVX-512, 2026-11-29): fact
# recall 0.761, false refusals 0.061 (3 of 49), missed 0.125 (1 of 8), with room for a turn or two, as the Debian
# sets' floors (tests/pipeline/test_eval_debdocs.py). Far from issue 37's goals: a floor, not a target.
ANSWER_FLOORS = {"fact_recall": 0.72, "false_refusal_rate": 0.11, "missed_refusal_rate": 0.38}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (DEFAULT_HTML / "index.html").is_file():
        message = "the Debian package postgresql-doc-15 is not installed (scripts/test installs it)"
        if os.environ.get("LORECHAT_REQUIRE_SERVICES") == "1":
            pytest.fail(f"LORECHAT_REQUIRE_SERVICES=1 but {message}")
        pytest.skip(message)
    out = tmp_path_factory.mktemp("pgdocs") / "content"
    build(DEFAULT_HTML, out)
    return out


def test_corpus_has_hundreds_of_sections_in_seven_parts(corpus: Path) -> None:
    counts = {folder.name: len(list(folder.glob("*.html"))) for folder in corpus.iterdir()}
    assert set(counts) == {slug for slug, _ in PARTS.values()}
    assert sum(counts.values()) >= 500 and min(counts.values()) >= 10, counts
    page = (corpus / "sql-language" / "datatype-uuid.html").read_text(encoding="utf-8")
    assert "<title>UUID Type</title>" in page  # the section number is gone from the title
    assert "navheader" not in page and "Prev" not in page  # navigation chrome is dropped


def test_questions_and_judgements_match_the_corpus(corpus: Path) -> None:
    queries = load_queries(PGDOCS / "queries.jsonl")
    qrels = load_qrels(PGDOCS / "qrels.tsv")
    creators = load_query_creators(PGDOCS / "queries.jsonl")
    assert len(queries) >= 60 and set(qrels) == set(queries)
    assert len(creators) >= 10  # creator-scoped questions
    for qid, judged in qrels.items():
        assert any(grade == 2 for grade in judged.values()), qid
        for document_id in judged:
            assert (corpus / document_id).is_file(), f"{qid}: {document_id} is not in the corpus"
            if qid in creators:
                assert document_id.startswith(creators[qid] + "/"), f"{qid} is scoped to {creators[qid]}"


def test_the_answer_set_is_well_formed(corpus: Path) -> None:
    check_answer_set(PGDOCS / "answers.jsonl", corpus, author_voice=False)  # a manual: no author's voice


@pytest.mark.slow
# Embedding 2,675 chunks is ~3.7 min of CPU (about 2 min on an idle 2-core machine); a machine shared with other
# runs needs more than the suite's 300 s default.
@pytest.mark.timeout(900)
def test_pgdocs_eval_stays_above_floors(corpus: Path, lorechat_env: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "eval",
            "--content",
            str(corpus),
            "--queries",
            str(PGDOCS / "queries.jsonl"),
            "--qrels",
            str(PGDOCS / "qrels.tsv"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    scores = report["scores"]
    assert report["queries"] >= 60 and report["documents"] >= 500
    for mode, floors in FLOORS.items():
        for metric, floor in floors.items():
            assert scores[mode][metric] >= floor, f"{mode} {metric} fell to {scores[mode][metric]:.4f} (< {floor})"
    # The goal of issue 15: fusion beats the better single retriever by at least 0.02 MRR@10 on this set.
    best_single = max(scores["bm25"]["mrr@10"], scores["dense"]["mrr@10"])
    assert scores["hybrid"]["mrr@10"] >= best_single + 0.02, scores


@pytest.mark.slow
# Indexing the manual with sentence vectors, then 55 turns through the service's turn: 4-8 minutes on two cores.
@pytest.mark.timeout(1500)
def test_answers_stay_above_the_set_floors(corpus: Path, tmp_path: Path) -> None:
    """The offline default (the extractive tier) on the manual's answer set, through the service's own turn: the
    set closest in kind to API documentation (parameters, functions, statements, flags)."""
    check_answer_floors(PGDOCS / "answers.jsonl", corpus, tmp_path, ANSWER_FLOORS)
