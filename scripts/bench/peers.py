"""Peers side by side: LlamaIndex's IngestionPipeline vs lorechat's ingest, and a plain bm25s index vs our retrievers.

Ingest (same corpus: the demo corpus replicated --copies times, same model, same CPU, one after the other):
  - lorechat: pipeline.ingest.ingest — parse (md/html/pdf/srt/vtt/jsonl) + chunk + embed + BM25 + Edge upsert;
  - LlamaIndex: IngestionPipeline([TokenTextSplitter(chunk_size, chunk_overlap, cl100k tokenizer),
    HuggingFaceEmbedding(<bundled model dir>, device="cpu", embed_batch_size=32)]) over our already-parsed
    documents' text (LlamaIndex has no readers for all our formats offline) with no vector store: it does less.
Retrieval (the demo eval set, nDCG@10 etc.): bm25s (stop words, no stemmer: PyStemmer is not installed) over
whole documents (title + text), beside lorechat's bm25 / dense / hybrid from pipeline.evaluate.

Needs the optional `peers` dependency group (llama-index-core, llama-index-embeddings-huggingface, bm25s).

    .venv/bin/python -m scripts.bench.peers
    .venv/bin/python -m scripts.bench.peers --copies 10
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scripts.bench import benchlib

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def lorechat_ingest(corpus: Path, embedder: Any) -> dict[str, Any]:
    from backend.retrieval.search import Retriever
    from backend.retrieval.stores.edge import EdgeStore
    from backend.settings import ChunkingSettings, RetrievalSettings

    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        store = EdgeStore(Path(tmp) / "index", hnsw_ef=128)
        retriever = Retriever(embedder=embedder, store=store, settings=RetrievalSettings())
        t0 = time.perf_counter()
        chunking = ChunkingSettings(size_tokens=256, overlap_tokens=32)
        report = benchlib.indexer(retriever, Path(tmp), chunking).ingest([corpus])
        seconds = time.perf_counter() - t0
        store.close()
    return {
        "seconds": round(seconds, 3),
        "chunks": report.chunks_written,
        "chunks_per_s": round(report.chunks_written / seconds, 2),
    }


def llamaindex_ingest(corpus: Path, *, batch_size: int) -> dict[str, Any]:
    from llama_index.core import Document as LIDocument
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import TokenTextSplitter
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    from backend.retrieval.embedder import bundled_model_path
    from pipeline.chunk import encoding
    from pipeline.eval_data import load_content

    documents = [
        LIDocument(text=d.text, metadata={"title": d.title, "creator": d.creator}, doc_id=d.document_id)
        for d in load_content(corpus)
    ]
    t0 = time.perf_counter()
    embed = HuggingFaceEmbedding(model_name=str(bundled_model_path()), device="cpu", embed_batch_size=batch_size)
    load_seconds = time.perf_counter() - t0
    enc = encoding()
    splitter = TokenTextSplitter(
        chunk_size=256, chunk_overlap=32, tokenizer=lambda text: enc.encode(text, disallowed_special=())
    )
    pipeline = IngestionPipeline(transformations=[splitter, embed])
    embed.get_text_embedding_batch(["warm up"] * 8)
    t0 = time.perf_counter()
    nodes = pipeline.run(documents=documents, show_progress=False)
    seconds = time.perf_counter() - t0
    return {
        "seconds": round(seconds, 3),
        "chunks": len(nodes),
        "chunks_per_s": round(len(nodes) / seconds, 2),
        "model_load_seconds": round(load_seconds, 2),
    }


def bm25s_scores() -> dict[str, float]:
    import bm25s

    from pipeline.eval_data import load_eval_set
    from pipeline.eval_metrics import mean_scores, score_query

    eval_set = load_eval_set(
        content=benchlib.DEMO_CONTENT,
        queries=benchlib.EVAL_DIR / "queries.jsonl",
        qrels=benchlib.EVAL_DIR / "qrels.tsv",
    )
    ids = [d.document_id for d in eval_set.documents]
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize([f"{d.title}\n{d.text}" for d in eval_set.documents], stopwords="en", show_progress=False),
        show_progress=False,
    )
    queries = eval_set.judged_queries()
    per_query = []
    for qid, text in queries.items():
        results, _ = retriever.retrieve(
            bm25s.tokenize([text], stopwords="en", show_progress=False), k=len(ids), show_progress=False
        )
        per_query.append(score_query([ids[i] for i in results[0]], eval_set.qrels[qid]))
    return mean_scores(per_query)


def lorechat_scores(embedder: Any) -> dict[str, dict[str, float]]:
    from backend.settings import ChunkingSettings, RetrievalSettings
    from pipeline.eval_data import load_eval_set
    from pipeline.evaluate import evaluate

    eval_set = load_eval_set(
        content=benchlib.DEMO_CONTENT,
        queries=benchlib.EVAL_DIR / "queries.jsonl",
        qrels=benchlib.EVAL_DIR / "qrels.tsv",
    )
    return evaluate(
        eval_set, embedder=embedder, chunking=ChunkingSettings(), retrieval=RetrievalSettings(), repeats=5
    ).scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=3, help="Copies of the demo corpus (81 chunks each).")
    args = parser.parse_args()

    from backend.retrieval.embedder import get_embedder
    from backend.settings import EmbeddingSettings

    embedder = get_embedder(EmbeddingSettings(backend="torch"))
    embedder.embed_documents(["warm up"] * 8)
    with tempfile.TemporaryDirectory(prefix="bench-peers-corpus-") as tmp:
        corpus = Path(tmp) / "content"
        benchlib.replicate_corpus(benchlib.DEMO_CONTENT, corpus, copies=args.copies)
        print("lorechat ingest…", file=sys.stderr)
        ours = lorechat_ingest(corpus, embedder)
        print("LlamaIndex IngestionPipeline…", file=sys.stderr)
        theirs = llamaindex_ingest(corpus, batch_size=embedder.batch_size)
    print("retrieval quality…", file=sys.stderr)
    quality = {
        "bm25s (documents)": bm25s_scores(),
        **{f"lorechat {m}": s for m, s in lorechat_scores(embedder).items()},
    }

    ratio = theirs["seconds"] / ours["seconds"]
    benchlib.print_table(
        f"Ingest, demo corpus x{args.copies} (torch fp32, batch {embedder.batch_size})",
        ["pipeline", "seconds", "chunks", "chunks/s"],
        [
            ["lorechat ingest (parse+chunk+embed+bm25+upsert)", ours["seconds"], ours["chunks"], ours["chunks_per_s"]],
            ["LlamaIndex IngestionPipeline (split+embed)", theirs["seconds"], theirs["chunks"], theirs["chunks_per_s"]],
        ],
    )
    print(f"same corpus, wall time ratio LlamaIndex / lorechat = {ratio:.2f} (>1: lorechat is faster)")
    benchlib.print_table(
        "Retrieval on the demo eval set",
        ["retriever", "ndcg@10", "recall@10", "recall@100", "mrr@10"],
        [[name, s["ndcg@10"], s["recall@10"], s["recall@100"], s["mrr@10"]] for name, s in quality.items()],
    )
    benchlib.write_results(
        "peers",
        {
            "copies": args.copies,
            "lorechat_ingest": ours,
            "llamaindex_ingest": theirs,
            "llamaindex_over_lorechat_seconds": round(ratio, 3),
            "quality": quality,
            "versions": _versions(),
        },
    )


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {
        p: version(p)
        for p in (
            "llama-index-core",
            "llama-index-embeddings-huggingface",
            "bm25s",
            "sentence-transformers",
            "transformers",
            "torch",
        )
    }


if __name__ == "__main__":
    main()
