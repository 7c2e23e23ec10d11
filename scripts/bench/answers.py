"""Answer checks on the demo corpus: extractive composition, coverage and the claim check, in milliseconds.

The demo corpus is ingested into a temp data dir (timed without and with `chunking.sentence_vectors`, side by
side); each question of examples/eval/answers.jsonl is retrieved once, and the coverage check timed on a cold
sentence cache twice: with the sentence vectors the index returned (a fresh process's first turn over these
chunks today), and without them (the sentences embedded then, as before ingest stored them). Then (warm
sentence cache, as in a running service) timed: the extractive tier's composition, the coverage check, and
the claim check of a cited paraphrase (new sentences to embed, as a model's answer has).

    .venv/bin/python -m scripts.bench.answers [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

from backend.chat.prompt import build_prompt
from backend.chat.tiers.extractive import compose_answer
from backend.grounding.claim_check import check_answer
from backend.grounding.coverage import assess
from backend.grounding.sentences import SentenceVectors
from backend.retrieval.embedder import get_embedder
from backend.retrieval.search import Retriever
from backend.retrieval.stores.edge import EdgeStore
from backend.settings import ChunkingSettings, EmbeddingSettings, RetrievalSettings
from pipeline.catalog_update import read_catalog
from scripts.bench import benchlib


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    embedder = get_embedder(EmbeddingSettings())
    with tempfile.TemporaryDirectory() as work:
        data = Path(work)
        store = EdgeStore(data / "index", hnsw_ef=128)
        retriever = Retriever(embedder=embedder, store=store, settings=RetrievalSettings())
        plain = EdgeStore(data / "plain-index", hnsw_ef=128)
        started = time.perf_counter()
        benchlib.indexer(
            Retriever(embedder=embedder, store=plain, settings=RetrievalSettings()),
            data / "plain",
            ChunkingSettings(sentence_vectors=False),
        ).ingest([benchlib.DEMO_CONTENT])
        ingest_plain = time.perf_counter() - started
        plain.close()
        indexer = benchlib.indexer(retriever, data, ChunkingSettings())
        started = time.perf_counter()
        indexer.ingest([benchlib.DEMO_CONTENT])
        ingest_with = time.perf_counter() - started
        catalog = read_catalog(indexer.catalog.database, data)
        vectors = SentenceVectors(embedder)
        rows = [json.loads(line) for line in (benchlib.EVAL_DIR / "answers.jsonl").open()]
        names = (
            "extractive",
            "coverage",
            "coverage (cold, vectors from index)",
            "coverage (cold cache)",
            "claim check (paraphrase)",
            "claim check (extractive)",
        )
        timings: dict[str, list[float]] = {name: [] for name in names}
        for row in rows:
            creator = catalog.creator(row["creator"]) if row.get("creator") else None
            question = row["question"]
            stored = retriever.search(row["question"], creator=row.get("creator"))
            hits = [replace(hit, sentence_vectors=None) for hit in stored]
            prompt = build_prompt(
                question=row["question"],
                sources=hits,
                history=[],
                creator=creator,
                personality_weight=0.0,
                context_window=4096,
                max_tokens=512,
            )
            # The first turn over these chunks in a fresh process: vectors from the index (seeded as the service
            # does), then none (embedded now).
            started = time.perf_counter()
            fresh = SentenceVectors(embedder)
            assess(question, search_query=question, hits=fresh.seed(stored), creator=creator, vectors=fresh)
            timings["coverage (cold, vectors from index)"].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            assess(question, search_query=question, hits=hits, creator=creator, vectors=SentenceVectors(embedder))
            timings["coverage (cold cache)"].append((time.perf_counter() - started) * 1000)
            answer = compose_answer(prompt, vectors)  # warms the sentence cache, as earlier turns would
            # A model-like answer: the quoted sentences reworded a little (new text to embed), still cited.
            reworded = answer.replace("I ", "She ").replace(" my ", " her ").replace("Here is what", "This is what")
            for repeat in range(args.repeats):
                # Every sentence new to the cache each time, as a model's answer is (the worst case).
                paraphrase = re.sub(r"([.!?]) \[", rf" (take {'abcdefghij'[repeat % 10]})\1 [", reworded)
                for name, work_fn in (
                    ("extractive", partial(compose_answer, prompt, vectors)),
                    (
                        "coverage",
                        partial(assess, question, search_query=question, hits=hits, creator=creator, vectors=vectors),
                    ),
                    ("claim check (paraphrase)", partial(check_answer, paraphrase, hits, vectors, creator=creator)),
                    ("claim check (extractive)", partial(check_answer, answer, hits, vectors, creator=creator)),
                ):
                    started = time.perf_counter()
                    work_fn()
                    timings[name].append((time.perf_counter() - started) * 1000)
        store.close()
    print(f"{len(rows)} questions x {args.repeats} repeats, embedder {embedder.embedder_id}")
    print(f"  ingest of the demo corpus: {ingest_plain:.1f} s without sentence vectors, {ingest_with:.1f} s with")
    for name, values in timings.items():
        print(f"  {name:36s} p50 {statistics.median(values):6.1f} ms   p99 {pct(values, 0.99):6.1f} ms")
    benchlib.write_results(
        "answers",
        {
            "questions": len(rows),
            "repeats": args.repeats,
            "embedder": embedder.embedder_id,
            "ingest_seconds": {"without_sentence_vectors": round(ingest_plain, 2), "with": round(ingest_with, 2)},
            "ms": {
                name: {"p50": round(statistics.median(values), 2), "p99": round(pct(values, 0.99), 2)}
                for name, values in timings.items()
            },
        },
    )


if __name__ == "__main__":
    main()
