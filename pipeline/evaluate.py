"""Retrieval quality: index an evaluation corpus into a throwaway Edge shard and score bm25, dense and hybrid.

Documents are chunked by our chunker and embedded through Retriever.embed_chunks, exactly as ingest does.
Metrics are per document: a document's rank is the rank of its best chunk (first appearance in the chunk
ranking). The chunk ranking of each mode is built like production's: one search with the configured
`prefetch_limit` (what the chat sees, top first), followed by a deeper search that only appends documents
not seen yet, so Recall@100 has a hundred documents to look at even when documents have many chunks.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.retrieval.embedder import Embedder
from backend.retrieval.models import SearchMode
from backend.retrieval.search import Retriever, in_rank_order
from backend.retrieval.stores.edge import EdgeStore
from backend.settings import ChunkingSettings, RetrievalSettings
from backend.stages import Hit
from pipeline.eval_data import EvalSet
from pipeline.eval_metrics import mean_scores, score_query
from pipeline.indexer import Indexer

MODES: tuple[SearchMode, ...] = ("bm25", "dense", "hybrid")
# Chunks fetched per document wanted in the deep search: documents longer than one chunk need a margin.
_CHUNKS_PER_DOCUMENT = 4


@dataclass(slots=True)
class EvalReport:
    k: int
    deep_k: int
    documents: int
    chunks: int
    queries: int
    # mode -> metric name -> mean over judged queries
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    # mode -> query id -> metric name -> value (for per-query analysis and significance tests)
    per_query: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    index_seconds: float = 0.0
    search_seconds: float = 0.0
    embedder_id: str = ""

    def as_json(self, *, per_query: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "embedder": self.embedder_id,
            "k": self.k,
            "documents": self.documents,
            "chunks": self.chunks,
            "queries": self.queries,
            "scores": self.scores,
            "index_seconds": round(self.index_seconds, 3),
            "search_seconds": round(self.search_seconds, 3),
        }
        if per_query:
            out["per_query"] = self.per_query
        return out


def evaluate(
    eval_set: EvalSet,
    *,
    embedder: Embedder,
    chunking: ChunkingSettings,
    retrieval: RetrievalSettings,
    hnsw_ef: int = 128,
    modes: Sequence[SearchMode] = MODES,
    k: int = 10,
    deep_k: int = 100,
    repeats: int = 1,
    work_dir: Path | None = None,
) -> EvalReport:
    """Score every mode on the same freshly built index; the index is deleted afterwards.

    `repeats` > 1 ranks every query that many times and averages its scores: Edge breaks ties between equal
    RRF scores in no fixed order, so one hybrid run can move nDCG@10 by a few thousandths.
    """
    queries = eval_set.judged_queries()
    root = Path(tempfile.mkdtemp(prefix="lorechat-eval-", dir=work_dir))
    store = EdgeStore(root / "index", hnsw_ef=hnsw_ef)
    try:
        retriever = Retriever(embedder=embedder, store=store, settings=retrieval)
        started = time.perf_counter()
        chunks = index_documents(eval_set, retriever=retriever, chunking=chunking)
        report = EvalReport(
            k=k,
            deep_k=deep_k,
            documents=len(eval_set.documents),
            chunks=chunks,
            queries=len(queries),
            index_seconds=time.perf_counter() - started,
            embedder_id=embedder.embedder_id,
        )
        started = time.perf_counter()
        runs = [
            rank_all(
                queries,
                retriever=retriever,
                modes=modes,
                deep_chunks=deep_k * _CHUNKS_PER_DOCUMENT,
                creators=eval_set.query_creators,
            )
            for _ in range(max(1, repeats))
        ]
        report.search_seconds = time.perf_counter() - started
        for mode in modes:
            scored = {
                qid: mean_scores([score_query(run[mode][qid], eval_set.qrels[qid], k=k, deep_k=deep_k) for run in runs])
                for qid in queries
            }
            report.per_query[mode] = scored
            report.scores[mode] = mean_scores(list(scored.values()))
        return report
    finally:
        store.close()
        shutil.rmtree(root, ignore_errors=True)


def index_documents(eval_set: EvalSet, *, retriever: Retriever, chunking: ChunkingSettings) -> int:
    """Chunk, embed and upsert every document with the indexer (without the catalog); returns the chunk count."""
    indexer = Indexer(retriever=retriever, chunking=chunking, catalog=None)
    return indexer.write_documents(eval_set.documents)


def rank_all(
    queries: dict[str, str],
    *,
    retriever: Retriever,
    modes: Sequence[SearchMode],
    deep_chunks: int,
    creators: Mapping[str, str] | None = None,
) -> dict[str, dict[str, list[str]]]:
    """mode -> query id -> document ids, best first. Each query is embedded once and reused by every mode;
    a query with a creator (in `creators`) is scoped to it, as a chat with that creator is."""
    prefetch = retriever.settings.prefetch_limit
    rankings: dict[str, dict[str, list[str]]] = {mode: {} for mode in modes}
    for qid, text in queries.items():
        vectors = retriever.query_vectors(text, mode="hybrid")
        fusion = retriever.fusion_for(text)
        creator = (creators or {}).get(qid)
        for mode in modes:
            top = retriever.store.search(
                vectors, k=prefetch, mode=mode, creator=creator, prefetch_limit=prefetch, fusion=fusion
            )
            deep: list[Hit] = []
            if deep_chunks > prefetch:
                deep = retriever.store.search(
                    vectors,
                    k=deep_chunks,
                    mode=mode,
                    creator=creator,
                    prefetch_limit=deep_chunks,
                    fusion=fusion,
                )
            # The top as the service ranks it (late interaction in hybrid), then the deep search's new documents.
            refined = retriever.refine(vectors, top, mode=mode, fusion=fusion)
            rankings[mode][qid] = documents_by_best_chunk([*refined, *in_rank_order(deep)])
    return rankings


def documents_by_best_chunk(hits: Sequence[Hit]) -> list[str]:
    """Document ids in order of their first (best-ranked) chunk."""
    seen: dict[str, None] = {}
    for hit in hits:
        seen.setdefault(hit.document_id, None)
    return list(seen)
