"""Embedding batches capped by padded size (`embedding.batch_chars`): CPU per chunk and per sentence, side by side.

A batch is padded to its longest text, and its activations grow with batch size x length; `embedding.batch_chars`
caps the padded characters of one batch besides `embedding.batch_size`. Whether a cap helps depends on the CPU's
caches (the weights are read once a batch, the activations must stay in a core's cache), so this bench times every
cap on the machine it runs on, on one ONNX thread, in alternating rounds (a noisy neighbour hits all caps alike):

- chunks: the corpus' chunks as ingest cuts them (fitted to the model's window), embedded as one call, as a write
  batch is;
- sentences: their sentences, in calls of `--sentence-calls` texts (ingest sends a chunk batch's sentences at once;
  the answer checks send a turn's).

Figures are process CPU time (user + system) per text, the median over rounds, and the largest difference of any
vector component from the first cap's (a cap changes which texts share a batch; padding is masked, so the vectors
should not move: the Xeon read them equal bit for bit).

    .venv/bin/python -m scripts.bench.embed_batches                      # handbook corpus if built, else demo x3
    .venv/bin/python -m scripts.bench.embed_batches --caps 0,1024,2048,4096 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from scripts.bench import benchlib

NO_CAP = 10_000_000  # embedding.batch_chars' ceiling: only batch_size bounds a batch


def texts_of(corpus: Path, limit: int, window: Any) -> tuple[list[str], list[str]]:
    """The first `limit` chunks as ingest cuts them to `window` (an Embedder: its model's window) and their
    sentences."""
    from backend.grounding.sentences import sentence_texts
    from backend.retrieval.search import embed_text
    from backend.settings import ChunkingSettings
    from pipeline.chunk import chunk_document
    from pipeline.eval_data import load_content

    chunking = ChunkingSettings()
    chunks = [
        c
        for d in load_content(corpus)
        for c in chunk_document(
            d, size_tokens=chunking.size_tokens, overlap_tokens=chunking.overlap_tokens, window=window
        )
    ][:limit]
    sentences = list(dict.fromkeys(s for c in chunks for s in sentence_texts(c.text)))
    return [embed_text(c) for c in chunks], sentences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--caps", default="0,1024,2048,4096", help="batch_chars values (0: no cap).")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds.")
    parser.add_argument("--chunks", type=int, default=192, help="Chunks taken from the corpus.")
    parser.add_argument("--sentence-calls", type=int, default=64, help="Sentences per embedding call.")
    parser.add_argument("--corpus", type=Path, default=None, help="A content folder (default: handbook, else demo).")
    args = parser.parse_args()

    from backend.retrieval.embedder import Embedder
    from backend.settings import EmbeddingSettings

    corpus = args.corpus
    if corpus is None:
        handbook = benchlib.EVAL_DIR / "handbook" / "content"
        corpus = handbook if handbook.is_dir() else benchlib.DEMO_CONTENT
    caps = [int(part) or NO_CAP for part in args.caps.split(",")]
    embedders = {cap: Embedder(EmbeddingSettings(threads=1, quantized_queries=False, batch_chars=cap)) for cap in caps}
    chunks, sentences = texts_of(corpus, args.chunks, embedders[caps[0]])
    calls = [sentences[i : i + args.sentence_calls] for i in range(0, len(sentences), args.sentence_calls)]
    reference: dict[str, np.ndarray] = {}
    drift = {cap: 0.0 for cap in caps}
    cpu: dict[int, dict[str, list[float]]] = {cap: {"chunks": [], "sentences": []} for cap in caps}
    for embedder in embedders.values():  # warm-up: sessions built, first calls paid
        embedder.embed_documents(chunks[:16])
    for round_ in range(args.rounds):
        order = caps if round_ % 2 == 0 else list(reversed(caps))
        for cap in order:
            embedder = embedders[cap]
            started = benchlib.cpu_seconds()
            chunk_vectors = embedder.embed_documents(chunks)
            cpu[cap]["chunks"].append(benchlib.cpu_seconds() - started)
            started = benchlib.cpu_seconds()
            sentence_vectors = np.concatenate([embedder.embed_documents(call) for call in calls])
            cpu[cap]["sentences"].append(benchlib.cpu_seconds() - started)
            if not reference:
                reference = {"chunks": chunk_vectors, "sentences": sentence_vectors}
            drift[cap] = max(
                drift[cap],
                float(np.abs(reference["chunks"] - chunk_vectors).max()),
                float(np.abs(reference["sentences"] - sentence_vectors).max()),
            )
        time.sleep(0.1)
    lengths = sorted(len(text) for text in chunks)
    rows: list[list[Any]] = []
    results: dict[str, Any] = {}
    for cap in caps:
        chunk_ms = statistics.median(cpu[cap]["chunks"]) / len(chunks) * 1000
        sentence_ms = statistics.median(cpu[cap]["sentences"]) / len(sentences) * 1000
        name = "no cap" if cap == NO_CAP else str(cap)
        rows.append([name, round(chunk_ms, 2), round(sentence_ms, 2), f"{drift[cap]:.1e}"])
        results[name] = {
            "chunk_cpu_ms": round(chunk_ms, 3),
            "sentence_cpu_ms": round(sentence_ms, 3),
            "max_component_difference": drift[cap],
        }
    name = corpus.parent.name if corpus.name == "content" else corpus.name  # examples/eval/<set>/content
    title = (
        f"{name}: {len(chunks)} chunks of {lengths[0]}-{lengths[-1]} characters, {len(sentences)} sentences "
        f"in calls of {args.sentence_calls}; one thread, median of {args.rounds} rounds"
    )
    benchlib.print_table(title, ["batch_chars", "ms CPU / chunk", "ms CPU / sentence", "vectors differ by"], rows)
    benchlib.write_results(
        "embed_batches",
        {"corpus": name, "chunks": len(chunks), "sentences": len(sentences), "by_cap": results},
    )


if __name__ == "__main__":
    main()
