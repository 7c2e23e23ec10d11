"""`lorechat eval`: metrics against hand-computed values, BEIR parsing, and quality floors on the demo set."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from backend.errors import LorechatError
from backend.settings import RetrievalSettings
from backend.stages import Hit
from pipeline.cli import main
from pipeline.eval_data import load_corpus, load_eval_set, load_qrels, load_queries, load_query_creators
from pipeline.eval_metrics import mean_scores, mrr_at_k, ndcg_at_k, recall_at_k, score_query
from pipeline.evaluate import documents_by_best_chunk, rank_all
from tests.conftest import DEMO_CONTENT, REPO

EVAL_DIR = REPO / "examples" / "eval"

# Measured on the demo set (torch backend, settings defaults; see BENCHMARKS.md), minus 0.05: a drop
# below these means a change to parsing, chunking, embedding or fusion made retrieval worse.
FLOORS = {
    "bm25": {"ndcg@10": 0.87, "recall@10": 0.93, "mrr@10": 0.89},
    "dense": {"ndcg@10": 0.83, "recall@10": 0.89, "mrr@10": 0.85},
    "hybrid": {"ndcg@10": 0.90, "recall@10": 0.94, "mrr@10": 0.93},
}


# --- metrics, by hand ---------------------------------------------------------------------------


def test_ndcg_perfect_and_second_place() -> None:
    assert ndcg_at_k(["a", "b", "c"], {"a": 1}, 10) == 1.0
    # One relevant document at rank 2: 1 / log2(3) over an ideal of 1.
    assert ndcg_at_k(["x", "a"], {"a": 1}, 10) == pytest.approx(0.6309298)


def test_ndcg_graded_uses_linear_gain() -> None:
    # DCG = 1/log2(2) + 2/log2(3) = 2.2618595; ideal = 2/log2(2) + 1/log2(3) = 2.6309298.
    assert ndcg_at_k(["b", "a"], {"a": 2, "b": 1}, 10) == pytest.approx(2.2618595 / 2.6309298)


def test_ndcg_cut_applies_to_ranking_and_ideal() -> None:
    judged = {"a": 1, "b": 1, "c": 1}
    # k=2: only [x, a] counts; ideal is two relevant documents: 1 + 1/log2(3).
    expected = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(["x", "a", "b", "c"], judged, 2) == pytest.approx(expected)


def test_zero_grade_is_not_relevant() -> None:
    judged = {"a": 0, "b": 1}
    assert mrr_at_k(["a", "b"], judged, 10) == 0.5
    assert recall_at_k(["a"], judged, 10) == 0.0
    assert ndcg_at_k(["a", "b"], judged, 10) == pytest.approx(1 / math.log2(3))


def test_recall_and_mrr_respect_the_cut() -> None:
    judged = {"a": 1, "b": 1, "c": 1}
    assert recall_at_k(["a", "x", "b"], judged, 1) == pytest.approx(1 / 3)
    assert recall_at_k(["a", "x", "b"], judged, 3) == pytest.approx(2 / 3)
    assert mrr_at_k(["x", "y", "c"], judged, 2) == 0.0
    assert mrr_at_k(["x", "y", "c"], judged, 3) == pytest.approx(1 / 3)


def test_no_relevant_document_scores_zero_not_error() -> None:
    assert ndcg_at_k(["a"], {}, 10) == 0.0
    assert recall_at_k(["a"], {"a": 0}, 10) == 0.0


def test_mean_is_a_macro_average() -> None:
    scores = [score_query(["a"], {"a": 1}), score_query(["x"], {"a": 1})]
    assert mean_scores(scores) == {"ndcg@10": 0.5, "recall@10": 0.5, "recall@100": 0.5, "mrr@10": 0.5}


def test_document_rank_is_its_best_chunk() -> None:
    def hit(doc: str) -> Hit:
        return Hit(chunk_id=doc, creator="c", document_id=doc, source="", title="", url=None, text="", score=0)

    assert documents_by_best_chunk([hit("b"), hit("a"), hit("b"), hit("c"), hit("a")]) == ["b", "a", "c"]


# --- BEIR files ---------------------------------------------------------------------------------


def test_beir_files_parse(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        json.dumps({"_id": "d1", "title": "Salt", "text": "First paragraph.\n\nSecond one."})
        + "\n\n"
        + json.dumps({"_id": "d2", "title": "", "text": "Only text."})
        + "\n",
        encoding="utf-8",
    )
    documents = load_corpus(corpus)
    assert [d.document_id for d in documents] == ["d1", "d2"]
    assert [b.text for b in documents[0].blocks] == ["First paragraph.", "Second one."]
    assert documents[1].title == "d2"
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"_id": "q1", "text": "salt?"}) + "\n", encoding="utf-8")
    assert load_queries(queries) == {"q1": "salt?"}
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\n", encoding="utf-8")
    assert load_qrels(qrels) == {"q1": {"d1": 2, "d2": 0}}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("qrels.tsv", "q1\td1\t1\n", "header"),
        ("qrels.tsv", "query-id\tcorpus-id\tscore\nq1\td1\thigh\n", "not a number"),
        ("corpus.jsonl", '{"_id": "d1", "text": "x"}\n{"_id": "d1", "text": "y"}\n', "duplicate"),
        ("corpus.jsonl", "{not json\n", "invalid JSON"),
    ],
)
def test_bad_files_are_clear_errors(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(LorechatError, match=message) as caught:
        (load_qrels if name.endswith(".tsv") else load_corpus)(path)
    assert caught.value.code == "invalid_input"


def test_shipped_eval_set_is_consistent() -> None:
    from pipeline.eval_data import load_content

    ids = {d.document_id for d in load_content(DEMO_CONTENT)}
    queries = load_queries(EVAL_DIR / "queries.jsonl")
    qrels = load_qrels(EVAL_DIR / "qrels.tsv")
    assert len(queries) >= 40
    assert set(qrels) == set(queries)
    judged = {doc for grades in qrels.values() for doc in grades}
    assert judged <= ids, f"qrels name documents the demo corpus does not have: {judged - ids}"


# --- end to end, on the real embedder and a real Edge shard --------------------------------------


def _eval(args: list[str]) -> dict:
    result = CliRunner().invoke(main, ["eval", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_beir_corpus_end_to_end(lorechat_env: Path, tmp_path: Path) -> None:
    (tmp_path / "corpus.jsonl").write_text(
        "\n".join(
            json.dumps(d)
            for d in [
                {"_id": "salt", "title": "Salt", "text": "Two percent salt of the flour weight seasons bread."},
                {"_id": "oven", "title": "Oven", "text": "Preheat the baking stone for an hour at 250 degrees."},
                {"_id": "hooch", "title": "Hooch", "text": "A grey liquid on a hungry starter is called hooch."},
            ]
        ),
        encoding="utf-8",
    )
    (tmp_path / "queries.jsonl").write_text(
        json.dumps({"_id": "q1", "text": "how much salt in bread dough"})
        + "\n"
        + json.dumps({"_id": "q2", "text": "grey liquid on my starter"})
        + "\n"
        + json.dumps({"_id": "q3", "text": "unjudged query"})
        + "\n",
        encoding="utf-8",
    )
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tsalt\t1\nq2\thooch\t1\n", encoding="utf-8")
    report = _eval(
        [
            "--corpus",
            str(tmp_path / "corpus.jsonl"),
            "--queries",
            str(tmp_path / "queries.jsonl"),
            "--qrels",
            str(tmp_path / "qrels.tsv"),
            "--per-query",
        ]
    )
    assert (report["documents"], report["chunks"], report["queries"]) == (3, 3, 2)
    for mode in ("bm25", "dense", "hybrid"):
        assert report["scores"][mode]["mrr@10"] == 1.0, report["scores"][mode]
        assert set(report["per_query"][mode]) == {"q1", "q2"}


@pytest.mark.slow
def test_demo_eval_set_stays_above_floors(lorechat_env: Path) -> None:
    report = _eval(
        [
            "--content",
            str(DEMO_CONTENT),
            "--queries",
            str(EVAL_DIR / "queries.jsonl"),
            "--qrels",
            str(EVAL_DIR / "qrels.tsv"),
        ]
    )
    scores = report["scores"]
    assert report["queries"] >= 40
    for mode, floors in FLOORS.items():
        for metric, floor in floors.items():
            assert scores[mode][metric] >= floor, f"{mode} {metric} fell to {scores[mode][metric]:.4f} (< {floor})"
    # Fusion must never be worse than the better of its two inputs on this set.
    best_single = max(scores["bm25"]["ndcg@10"], scores["dense"]["ndcg@10"])
    assert scores["hybrid"]["ndcg@10"] >= best_single, scores


def test_cli_usage_errors(tmp_path: Path) -> None:
    queries = EVAL_DIR / "queries.jsonl"
    qrels = EVAL_DIR / "qrels.tsv"
    both = CliRunner().invoke(
        main,
        [
            "eval",
            "--content",
            str(DEMO_CONTENT),
            "--corpus",
            str(queries),
            "--queries",
            str(queries),
            "--qrels",
            str(qrels),
        ],
    )
    assert both.exit_code == 2 and "exactly one of" in both.output
    neither = CliRunner().invoke(main, ["eval", "--queries", str(queries), "--qrels", str(qrels)])
    assert neither.exit_code == 2


def test_queries_may_name_a_creator(tmp_path: Path) -> None:
    """Issue 15: creator-scoped questions (retrieval is scoped to that creator, as its chat is)."""
    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        json.dumps({"_id": "q1", "text": "salt?", "creator": "hazel-marsh"})
        + "\n"
        + json.dumps({"_id": "q2", "text": "flour?"})
        + "\n",
        encoding="utf-8",
    )
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\tx\t1\n", encoding="utf-8")
    assert load_query_creators(queries) == {"q1": "hazel-marsh"}
    eval_set = load_eval_set(content=DEMO_CONTENT, queries=queries, qrels=qrels)
    assert eval_set.query_creators == {"q1": "hazel-marsh"}
    queries.write_text(json.dumps({"_id": "q1", "text": "salt?", "creator": "nobody"}) + "\n", encoding="utf-8")
    with pytest.raises(LorechatError, match="creators the corpus does not have: nobody"):
        load_eval_set(content=DEMO_CONTENT, queries=queries, qrels=qrels)
    queries.write_text(json.dumps({"_id": "q1", "text": "salt?", "creator": 7}) + "\n", encoding="utf-8")
    with pytest.raises(LorechatError, match="non-empty string"):
        load_query_creators(queries)


def test_a_creator_scoped_query_only_ranks_that_creators_documents() -> None:
    class Recorder:
        """A store that answers one hit per creator asked: what rank_all scoped the search to."""

        def search(self, vectors: object, *, creator: str | None = None, **_: object) -> list[Hit]:
            doc = f"{creator or 'any'}/doc"
            fields = {"source": "", "title": "", "url": None, "text": "", "score": 1.0}
            return [Hit(chunk_id=doc, creator=creator or "", document_id=doc, **fields)]  # type: ignore[arg-type]

    class FakeRetriever:
        store = Recorder()
        settings = RetrievalSettings()

        def fusion_for(self, text: str) -> None:
            return None

        def query_vectors(self, text: str, *, mode: str) -> object:
            return text

        def refine(self, vectors: object, hits: list[object], *, mode: str, fusion: object) -> list[object]:
            return list(hits)  # the engine's order (late interaction is off by default)

    rankings = rank_all(
        {"q1": "a", "q2": "b"},
        retriever=FakeRetriever(),  # type: ignore[arg-type]
        modes=("bm25", "dense", "hybrid"),
        deep_chunks=400,
        creators={"q1": "hazel-marsh"},
    )
    for mode in ("bm25", "dense", "hybrid"):
        assert rankings[mode] == {"q1": ["hazel-marsh/doc"], "q2": ["any/doc"]}
