"""Late interaction (issue 37): hybrid's fused candidates re-scored by their best stored sentence, with the real
embedder and both fusion methods; the search the service runs and the ranking `lorechat eval` scores agree."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pytest

from backend.grounding.sentences import sentence_texts
from backend.retrieval.embedder import Embedder
from backend.retrieval.late_interaction import best_sentence_cosines, rescore
from backend.retrieval.packed_vectors import pack_vectors, unpack_vectors
from backend.retrieval.search import Retriever
from backend.retrieval.stores.edge import EdgeStore
from backend.retrieval.stores.protocol import Fusion
from backend.settings import ChunkingSettings, RetrievalSettings
from backend.stages import Block, Document, Hit
from pipeline.evaluate import rank_all
from pipeline.indexer import Indexer

QUESTION = "How long should the dough rest in the fridge?"
# Fused first: a chunk that shares the question's words throughout and answers nothing. Second: a chunk whose
# one sentence is the answer, among sentences about something else.
DIFFUSE = (
    "The fridge in our shop holds dough, butter and milk. Long dough tables stand by the window. "
    "Bakers rest on the bench at noon."
)
ANSWERING = (
    "Our bakery opened in 1998 on the harbour. Rest the dough in the fridge for 12 to 16 hours before shaping. "
    "The shop sells rye loaves on Saturdays."
)


def hit(embedder: Embedder, chunk_id: str, text: str, score: float, *, vectors: bool = True) -> Hit:
    packed = pack_vectors(embedder.embed_documents(sentence_texts(text))) if vectors else None
    return Hit(
        chunk_id=chunk_id, creator="baker", document_id=f"baker/{chunk_id}.md", source=f"{chunk_id}.md",
        title="Bread", url=None, text=text, score=score, sentence_vectors=packed,
    )  # fmt: skip


def filler(embedder: Embedder, count: int) -> list[Hit]:
    topics = ["Rye flour absorbs more water.", "Scoring lets the loaf open.", "Steam keeps the crust soft early."]
    return [hit(embedder, f"f{i}", topics[i % 3], 1.0 - 0.05 * i) for i in range(count)]


def test_the_chunk_whose_sentence_answers_overtakes_one_that_only_shares_words(shared_embedder: Embedder) -> None:
    query = shared_embedder.embed_query(QUESTION)
    hits = [hit(shared_embedder, "diffuse", DIFFUSE, 2.2), hit(shared_embedder, "answer", ANSWERING, 2.0)]
    hits += filler(shared_embedder, 6)
    cosines = best_sentence_cosines(hits, query / np.linalg.norm(query))
    assert cosines[1] is not None and cosines[0] is not None and cosines[1] > cosines[0]

    fusion = Fusion(method="dbsf", dense_weight=1.5, bm25_weight=1.0)
    rescored = rescore(hits, query.tolist(), fusion=fusion, weight=1.25, has_terms=True)
    ranked = sorted(rescored, key=lambda h: -h.score)
    assert ranked[0].chunk_id == "answer"
    # Each share is the DBSF-normalised cosine (0..1) in dense_weight's units: 3 repeats for 1.5, so x2 here.
    values = np.asarray(cosines, dtype=np.float64)
    low, spread = values.mean() - 3 * values.std(), 6 * values.std()
    for before, after, cosine in zip(hits, rescored, cosines, strict=True):
        share = float(np.clip((cosine - low) / spread, 0, 1))
        assert after.score == pytest.approx(before.score + 1.25 * 2 * share)
        assert after.score >= before.score


def test_zscore_adds_the_standardised_best_sentence_counted_from_the_lowest(shared_embedder: Embedder) -> None:
    """With z-score fusion the sentence list is standardised like the other two, in dense_weight's units, counted
    from its lowest so no share is negative (the re-scored head stays above the tail); a hit without sentence
    vectors gets the lowest, 0."""
    query = shared_embedder.embed_query(QUESTION)
    hits = [hit(shared_embedder, "diffuse", DIFFUSE, 2.2), hit(shared_embedder, "answer", ANSWERING, 2.0)]
    hits += [*filler(shared_embedder, 4), hit(shared_embedder, "old", ANSWERING, 0.5, vectors=False)]
    cosines = best_sentence_cosines(hits, query / np.linalg.norm(query))
    known = np.asarray([c for c in cosines if c is not None], dtype=np.float64)
    fusion = Fusion(method="zscore", dense_weight=1.5, bm25_weight=1.0)
    rescored = rescore(hits, query.tolist(), fusion=fusion, weight=1.25, has_terms=True)
    assert max(rescored, key=lambda h: h.score).chunk_id == "answer"
    for before, after, cosine in zip(hits, rescored, cosines, strict=True):
        share = 0.0 if cosine is None else (cosine - known.min()) / known.std()
        assert after.score == pytest.approx(before.score + 1.25 * share)
        assert after.score >= before.score
    assert rescored[-1].score == hits[-1].score


def test_rrf_adds_the_weighted_reciprocal_rank_of_the_best_sentence(shared_embedder: Embedder) -> None:
    query = shared_embedder.embed_query(QUESTION)
    hits = [hit(shared_embedder, "diffuse", DIFFUSE, 0.0300), hit(shared_embedder, "answer", ANSWERING, 0.0299)]
    fusion = Fusion(method="rrf", rrf_k=60)
    rescored = {h.chunk_id: h.score for h in rescore(hits, query.tolist(), fusion=fusion, weight=2.0, has_terms=True)}
    assert rescored["answer"] == pytest.approx(0.0299 + 1 / (59 + 1 / 2.0))  # its sentence ranks first
    assert rescored["diffuse"] == pytest.approx(0.0300 + 1 / (59 + 2 / 2.0))
    assert rescored["answer"] > rescored["diffuse"]


def test_without_sentence_vectors_or_weight_nothing_moves(shared_embedder: Embedder) -> None:
    query = shared_embedder.embed_query(QUESTION).tolist()
    fusion = Fusion(method="dbsf", dense_weight=1.5)
    bare = [hit(shared_embedder, "diffuse", DIFFUSE, 2.2, vectors=False), hit(shared_embedder, "a", ANSWERING, 2.0)]
    assert rescore(bare, query, fusion=fusion, weight=1.25, has_terms=True) == bare  # one hit with vectors: no list
    with_vectors = [hit(shared_embedder, "diffuse", DIFFUSE, 2.2), hit(shared_embedder, "answer", ANSWERING, 2.0)]
    assert rescore(with_vectors, query, fusion=fusion, weight=0.0, has_terms=True) == with_vectors
    # A hit without vectors among others gets the list's lowest share: it never gains on the others.
    mixed = [*filler(shared_embedder, 4), hit(shared_embedder, "old", ANSWERING, 0.9, vectors=False)]
    rescored = rescore(mixed, query, fusion=fusion, weight=1.25, has_terms=True)
    gains = [after.score - before.score for before, after in zip(mixed, rescored, strict=True)]
    assert gains[-1] == pytest.approx(min(gains[:-1]))


def test_packed_vectors_read_back_with_or_without_a_row_count(shared_embedder: Embedder) -> None:
    vectors = shared_embedder.embed_documents(["One sentence.", "Another one."])
    packed = pack_vectors(vectors)
    assert unpack_vectors(packed).shape == (2, vectors.shape[1])  # type: ignore[union-attr]
    assert unpack_vectors(packed, 2) is not None and unpack_vectors(packed, 3) is None
    for broken in ("", "384:", "x:AAAA", "384:AAA=", "0:AAAA"):
        assert unpack_vectors(broken) is None, broken


def test_the_service_search_and_the_eval_ranking_agree(shared_embedder: Embedder, tmp_path: Path) -> None:
    """`Retriever.search` (what a chat turn retrieves) and `rank_all` (what `lorechat eval` scores) rank hybrid the
    same way: late interaction over the fused top, on an index whose chunks carry sentence vectors; on by default,
    over the chunks a turn shows (k), so it reorders them without changing which they are."""
    defaults = RetrievalSettings()
    assert defaults.sentence_weight > 0 and defaults.sentence_candidates == defaults.k
    texts = [DIFFUSE, ANSWERING, "Rye flour absorbs more water than wheat flour.", "Score the loaf just before baking."]
    documents = [
        Document(
            creator="baker", document_id=f"baker/d{i}.md", source=f"d{i}.md", title=f"Bread {i}", blocks=(Block(text),)
        )
        for i, text in enumerate(texts)
    ]
    store = EdgeStore(tmp_path / "index", hnsw_ef=128)
    try:
        settings = RetrievalSettings()
        retriever = Retriever(embedder=shared_embedder, store=store, settings=settings)
        Indexer(retriever=retriever, chunking=ChunkingSettings(), catalog=None).write_documents(documents)
        payloads = store.search(
            retriever.query_vectors(QUESTION, mode="hybrid"), k=10, mode="hybrid", prefetch_limit=10
        )
        assert all(h.sentence_vectors for h in payloads)  # the eval index has them, as an ingested one does

        served = [h.document_id for h in retriever.search(QUESTION, k=4)]
        ranked = rank_all({"q": QUESTION}, retriever=retriever, modes=["hybrid"], deep_chunks=0)["hybrid"]["q"]
        assert served == ranked[: len(served)]
        assert served[0] == "baker/d1.md"

        plain = Retriever(
            embedder=shared_embedder, store=store, settings=settings.model_copy(update={"sentence_weight": 0.0})
        )
        fused_only = [h.document_id for h in plain.search(QUESTION, k=4)]
        scores = [h.score for h in retriever.search(QUESTION, k=4)]
        assert scores == sorted(scores, reverse=True)
        assert statistics.fmean(scores) > statistics.fmean(h.score for h in plain.search(QUESTION, k=4))
        assert set(fused_only) == set(served)  # the same candidates, re-ordered
    finally:
        store.close()
