"""Time-to-sources and ANN recall on the embedded Edge store at 10k / 100k (/ 300k) synthetic chunks.

Per size: build a synthetic corpus (see BENCHMARKS.md, "How the retrieval corpus is made"), upsert it through
EdgeStore.upsert, EdgeStore.optimize(), then
  - time-to-sources: real query string → real embedder (embed_query) → hybrid EdgeStore.search (RRF over
    dense + BM25 prefetches, payload included, Hit objects built) — with and without a creator filter;
  - recall@10 of the dense HNSW search (EdgeStore.search, mode "dense", the store reopened at each hnsw_ef)
    against the exact nearest neighbours (every chunk's vector scored by numpy: the corpus holds them), with
    and without the creator filter, with the dense search's latency at each.

    .venv/bin/python -m scripts.bench.retrieval              # 10k and 100k
    .venv/bin/python -m scripts.bench.retrieval --sizes 10000,100000,300000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from scripts.bench import benchlib

DIM = 384
CREATORS = 50
POINTS_PER_CLUSTER = 100
WORDS_PER_CHUNK = 150
VOCAB = 30_000
TOPIC_WORDS = 40
CLUSTERS_PER_TOPIC = 20
NOISE = 0.05  # per-dimension std of a point around its cluster centre: cosine to the centre ≈ 0.71
QUERY_NOISE = 0.06


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def make_vocabulary(rng: np.random.Generator) -> list[str]:
    """Pronounceable pseudo-words (so the English stemmer and stop-word list treat them as ordinary words)."""
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"]
    words: set[str] = set()
    while len(words) < VOCAB:
        lengths = rng.integers(2, 5, size=VOCAB)
        picks = rng.integers(0, len(syllables), size=(VOCAB, 4))
        words.update("".join(syllables[j] for j in row[:n]) for row, n in zip(picks.tolist(), lengths, strict=True))
    words = set(sorted(words)[:VOCAB]) if len(words) > VOCAB else words
    return [str(w) for w in rng.permutation(sorted(words))]


class Corpus:
    """Clustered unit vectors, a home creator per cluster, and texts from a Zipf vocabulary plus topic words."""

    def __init__(self, size: int, *, seed: int) -> None:
        self.rng = rng = np.random.default_rng(seed)
        self.size = size
        self.clusters = max(10, size // POINTS_PER_CLUSTER)
        # Two levels, as real content has: broad topics, and sub-topics that share half their direction with
        # their topic (sibling sub-topics sit at cosine ≈ 0.5), so near neighbours are not trivially separable.
        topics = _unit(rng.standard_normal((max(5, self.clusters // CLUSTERS_PER_TOPIC), DIM)))
        sub = _unit(rng.standard_normal((self.clusters, DIM)))
        self.centres = _unit(topics[rng.integers(0, len(topics), size=self.clusters)] + sub)
        # Creators differ in size (Zipf-like), and mostly write about their own topics.
        weights = 1.0 / np.arange(1, CREATORS + 1) ** 0.8
        self.creator_weights = weights / weights.sum()
        self.home = rng.choice(CREATORS, size=self.clusters, p=self.creator_weights)
        self.cluster_of = rng.integers(0, self.clusters, size=size)
        own = rng.random(size) < 0.8
        self.creator_of = np.where(
            own, self.home[self.cluster_of], rng.choice(CREATORS, size=size, p=self.creator_weights)
        )
        noise = rng.standard_normal((size, DIM)).astype(np.float32) * NOISE
        self.vectors = _unit(self.centres[self.cluster_of] + noise)
        self.vocab = make_vocabulary(rng)
        zipf = 1.0 / np.arange(1, VOCAB + 1) ** 1.07
        self.word_p = zipf / zipf.sum()
        self.topics = rng.integers(0, VOCAB, size=(self.clusters, TOPIC_WORDS))

    def texts(self, start: int, stop: int) -> list[str]:
        """Chunk texts: 30% of the words from the chunk's cluster topic, the rest from the Zipf background."""
        rng, n = self.rng, stop - start
        # One draw for the whole batch: a weighted choice recomputes its table on every call.
        background = rng.choice(VOCAB, size=(n, WORDS_PER_CHUNK), p=self.word_p)
        topic = np.take_along_axis(
            self.topics[self.cluster_of[start:stop]], rng.integers(0, TOPIC_WORDS, size=(n, WORDS_PER_CHUNK)), axis=1
        )
        ids = np.where(rng.random((n, WORDS_PER_CHUNK)) < 0.3, topic, background)
        vocab = self.vocab
        return [" ".join(vocab[j] for j in row) for row in ids.tolist()]

    def query(self) -> tuple[np.ndarray, str, str]:
        """A query near a random chunk's cluster: dense vector, BM25 text, and that chunk's creator (for filters)."""
        rng = self.rng
        i = int(rng.integers(0, self.size))
        cluster = self.cluster_of[i]
        q = self.centres[cluster] + rng.standard_normal(DIM).astype(np.float32) * QUERY_NOISE
        words = [self.vocab[j] for j in self.topics[cluster][rng.integers(0, TOPIC_WORDS, size=4)]]
        words += [self.vocab[int(rng.choice(VOCAB, p=self.word_p))] for _ in range(2)]
        return _unit(q), " ".join(words), f"creator-{self.creator_of[i]:02d}"


def chunk_at(corpus: Corpus, i: int, text: str) -> Any:
    """The corpus's i-th chunk as ingest would store it: 8 chunks a document, its creator's."""
    from backend.stages import Chunk

    creator = f"creator-{corpus.creator_of[i]:02d}"
    return Chunk(
        creator=creator,
        document_id=f"{creator}/doc-{i // 8}.md",
        source=f"{creator}/doc-{i // 8}.md",
        title=f"Document {i // 8}",
        url=None,
        position=i % 8,
        text=text,
        document_hash=f"{i // 8:064x}",
        heading="Section",
    )


def build(store: Any, corpus: Corpus) -> dict[str, float]:
    from backend.retrieval.sparse import bm25_document
    from backend.stages import EmbeddedChunk

    timings = {"texts_and_bm25_s": 0.0, "upsert_s": 0.0}
    batch = 2048
    for start in range(0, corpus.size, batch):
        t0 = time.perf_counter()
        stop = min(start + batch, corpus.size)
        items = [
            EmbeddedChunk(
                chunk=chunk_at(corpus, i, text), dense=tuple(corpus.vectors[i].tolist()), sparse=bm25_document(text)
            )
            for i, text in zip(range(start, stop), corpus.texts(start, stop), strict=True)
        ]
        t1 = time.perf_counter()
        store.upsert(items)
        timings["texts_and_bm25_s"] += t1 - t0
        timings["upsert_s"] += time.perf_counter() - t1
    t0 = time.perf_counter()
    store.optimize()
    timings["optimize_s"] = time.perf_counter() - t0
    return {k: round(v, 2) for k, v in timings.items()}


def time_to_sources(
    store: Any, embedder: Any, questions: benchlib.NewQuestions, corpus: Corpus, *, n: int, filtered: bool
) -> dict[str, Any]:
    """Real embedding of a real question + hybrid search for a synthetic query of the same shape, end to end."""
    from backend.retrieval.models import QueryVectors
    from backend.retrieval.sparse import bm25_query

    asked = questions.take(n + 10)  # new to the embedder, which answers a question it has seen from memory
    totals, embeds, searches = [], [], []
    for i in range(n + 10):
        dense, text, creator = corpus.query()
        t0 = time.perf_counter()
        embedder.embed_query(asked[i])
        t1 = time.perf_counter()
        # The embedded question is timed, but the synthetic corpus needs a query vector from its own space.
        vectors = QueryVectors(dense=tuple(dense.tolist()), sparse=bm25_query(text))
        hits = store.search(vectors, k=8, mode="hybrid", creator=creator if filtered else None, prefetch_limit=50)
        t2 = time.perf_counter()
        assert hits, "a synthetic query found nothing"
        if i >= 10:  # the first few warm caches
            totals.append(t2 - t0)
            embeds.append(t1 - t0)
            searches.append(t2 - t1)
    return {
        "total": benchlib.summary_ms(totals),
        "embed": benchlib.summary_ms(embeds),
        "search": benchlib.summary_ms(searches),
    }


def exact_neighbours(corpus: Corpus, dense: np.ndarray, creator: str | None, *, k: int = 10) -> set[str]:
    """The ids of the k chunks nearest `dense` (cosine: the vectors are unit), of `creator`'s only when given."""
    scores = corpus.vectors @ dense
    if creator is not None:
        scores = np.where(corpus.creator_of == int(creator.removeprefix("creator-")), scores, -np.inf)
    nearest = np.argsort(-scores, kind="stable")[:k]
    return {chunk_at(corpus, int(i), "").chunk_id for i in nearest if np.isfinite(scores[i])}


def recall(path: Path, corpus: Corpus, *, n: int, efs: list[int], filtered: bool) -> dict[int, dict[str, float | int]]:
    """Recall@10 of the dense search against the exact neighbours, and its latency, at each hnsw_ef: the index at
    `path` opened at that ef (the store's search setting) for each, the same queries at every ef."""
    from backend.retrieval.models import QueryVectors
    from backend.retrieval.stores.edge import EdgeStore
    from backend.stages import SparseVector

    no_terms = SparseVector(indices=(), values=())
    queries = [corpus.query() for _ in range(n)]
    truths = [exact_neighbours(corpus, dense, creator if filtered else None) for dense, _, creator in queries]
    out: dict[int, dict[str, float | int]] = {}
    for ef in efs:
        store = EdgeStore(path, hnsw_ef=ef)
        try:
            found, seconds = 0, []
            for (dense, _, creator), truth in zip(queries, truths, strict=True):
                vectors = QueryVectors(dense=tuple(dense.tolist()), sparse=no_terms)
                t0 = time.perf_counter()
                hits = store.search(vectors, k=10, mode="dense", creator=creator if filtered else None)
                seconds.append(time.perf_counter() - t0)
                found += len({hit.chunk_id for hit in hits} & truth)
        finally:
            store.close()
        out[ef] = {"recall@10": round(found / sum(len(t) for t in truths), 4), **benchlib.summary_ms(seconds)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="Comma-separated corpus sizes (chunks).")
    parser.add_argument("--queries", type=int, default=200, help="Queries per measurement.")
    parser.add_argument("--efs", default="32,64,128,256", help="hnsw_ef values for the recall sweep.")
    parser.add_argument(
        "--hnsw-ef", type=int, default=128, help="hnsw_ef of the time-to-sources runs (settings default)."
    )
    parser.add_argument("--backend", default="torch", help="Embedding backend for the query embedding.")
    args = parser.parse_args()

    from backend.retrieval.embedder import get_embedder
    from backend.retrieval.stores.edge import EdgeStore
    from backend.settings import EmbeddingSettings

    embedder = get_embedder(EmbeddingSettings(backend=args.backend))
    efs = [int(x) for x in args.efs.split(",")]
    questions = benchlib.NewQuestions()
    results: list[dict[str, Any]] = []
    for size in [int(s) for s in args.sizes.split(",")]:
        t0 = time.perf_counter()
        corpus = Corpus(size, seed=size)
        with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
            store = EdgeStore(Path(tmp) / "index", hnsw_ef=args.hnsw_ef)
            store.ensure_collection(dense_size=DIM, embedder_id="synthetic/clustered")
            print(f"[{size}] building…", file=sys.stderr)
            build_times = build(store, corpus)
            print(f"[{size}] built {build_times}; measuring…", file=sys.stderr)
            row: dict[str, Any] = {"size": size, "clusters": corpus.clusters, "build": build_times}
            for filtered in (False, True):
                key = "filtered" if filtered else "unfiltered"
                row[f"tts_{key}"] = time_to_sources(
                    store, embedder, questions, corpus, n=args.queries, filtered=filtered
                )
            store.close()  # one process opens an index once at a time: the recall sweep reopens it per ef
            for filtered in (False, True):
                key = "filtered" if filtered else "unfiltered"
                row[f"recall_{key}"] = recall(store.path, corpus, n=args.queries, efs=efs, filtered=filtered)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        results.append(row)
        print(f"[{size}] done in {row['seconds']}s", file=sys.stderr)
    _report(results, args)


def _report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    rows = []
    for r in results:
        for key in ("unfiltered", "filtered"):
            t = r[f"tts_{key}"]
            rows.append(
                [
                    f"{r['size']:,}",
                    key,
                    t["embed"]["p50_ms"],
                    t["search"]["p50_ms"],
                    t["search"]["p99_ms"],
                    t["total"]["p50_ms"],
                    t["total"]["p99_ms"],
                ]
            )
    benchlib.print_table(
        f"Time to sources (ms; real query embedding, {args.backend}; hybrid search k=8, hnsw_ef={args.hnsw_ef})",
        ["chunks", "filter", "embed p50", "search p50", "search p99", "total p50", "total p99"],
        rows,
    )
    rows = []
    for r in results:
        for key in ("unfiltered", "filtered"):
            for ef, v in r[f"recall_{key}"].items():
                rows.append([f"{r['size']:,}", key, ef, v["recall@10"], v["p50_ms"], v["p99_ms"]])
    benchlib.print_table(
        "Dense ANN recall@10 vs exact search",
        ["chunks", "filter", "hnsw_ef", "recall@10", "dense p50 ms", "dense p99 ms"],
        rows,
    )
    benchlib.print_table(
        "Build",
        ["chunks", "clusters", "texts+bm25 s", "upsert s", "optimize s", "total run s"],
        [
            [
                f"{r['size']:,}",
                r["clusters"],
                r["build"]["texts_and_bm25_s"],
                r["build"]["upsert_s"],
                r["build"]["optimize_s"],
                r["seconds"],
            ]
            for r in results
        ],
    )
    goals = {}
    for r in results:
        t = r["tts_unfiltered"]["total"]
        rec = r["recall_unfiltered"].get(args.hnsw_ef, {}).get("recall@10")
        goals[r["size"]] = {
            "p50_le_30ms": t["p50_ms"] <= 30,
            "p99_le_80ms": t["p99_ms"] <= 80,
            "recall_ge_0.95": rec is not None and rec >= 0.95,
        }
    print("goals (unfiltered, at the configured hnsw_ef):", goals)
    benchlib.write_results("retrieval", {"hnsw_ef": args.hnsw_ef, "results": results, "goals": goals})


if __name__ == "__main__":
    main()
