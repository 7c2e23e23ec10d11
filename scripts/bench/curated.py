"""Curated answers: how often a question gets a curated answer written for another question, and how often a
paraphrase gets its own, across match thresholds (the figures behind `curated.match_threshold`).

Every answer eval set under examples/eval (`answers.jsonl`, the demo set's and each set folder's) becomes a set of
curated answers, one per answerable question, its phrasing the question itself, scoped to the question's creator
as a curator would scope it. Its text is what a curator would copy from the content: the passage of the set's
corpus (up to three sentences of one document, of the question's creator) that states every one of the question's
facts, the one closest to the question; its document is linked (its title counts as the answer's words). Then,
through the service's own matcher (backend/curation/answers.py):
- false matches: every question of the set (follow-ups and unanswerable ones included) is asked against the
  answers written for the *other* questions; any fit is a false match (a visitor would get an answer written for
  something else). Counted per question, the figure a visitor sees.
- paraphrases: each `paraphrases.jsonl` beside a set (ids of its questions, a few rewordings each) asked against
  all of the set's answers: matched when its own answer fits best, wrong when another one does.
Then again with two phrasings an answer, as a curator has them once a gap topic written for it comes back with a
visitor's question the answer missed (`/admin` adds the topic's questions to its phrasings): each answer's question
and one of its paraphrases, the other paraphrase asked (both ways round, pooled); false matches as above, every
question against the other answers' two phrasings.

    .venv/bin/python -m scripts.bench.curated [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from backend.curation.answers import (
    EmbedQuestions,
    Judgement,
    Reading,
    answer_words,
    embed_readings,
    judge,
    question_embedder,
    read,
)
from backend.curation.answers_store import CuratedView
from backend.grounding.sentences import split_sentences
from backend.retrieval.embedder import get_embedder
from backend.settings import CuratedSettings, EmbeddingSettings
from backend.stages import Creator, Document
from pipeline.eval_sets import SETS
from pipeline.sources import content_files, parse_file
from scripts.bench import benchlib

EVAL = Path(__file__).resolve().parents[2] / "examples" / "eval"
DEMO_CONTENT = Path(__file__).resolve().parents[2] / "examples" / "content"
THRESHOLDS = [round(0.46 + 0.02 * i, 2) for i in range(13)]
PENALTIES = [0.0, 0.25, 0.5]


@dataclass(frozen=True, slots=True)
class Question:
    id: str  # the answer it belongs to ("" for none: an unanswerable question)
    text: str
    creator: str | None


@dataclass
class EvalSet:
    name: str
    answers: list[CuratedView]
    questions: list[Question]  # every question asked in the set
    paraphrases: list[Question]  # id: the answer each should get
    creators: dict[str, Creator]


def _creators(content: Path) -> dict[str, Creator]:
    found: dict[str, Creator] = {}
    for path in sorted(content.glob("*/creator.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        found[path.parent.name] = Creator(slug=path.parent.name, name=str(data.get("name") or path.parent.name))
    return found


def _documents(content: Path) -> list[Document]:
    found: list[Document] = []
    for folder in sorted(path for path in content.iterdir() if path.is_dir()):
        for file in content_files(folder):
            found += parse_file(file, creator=folder.name, creator_root=folder).documents
    return found


def _passage(row: dict[str, Any], documents: list[Document], embed: EmbedQuestions) -> tuple[str, Document] | None:
    """The passage a curator would answer `row` with: up to three sentences of one document (of its creator) that
    state every fact, the closest to the question; None when no passage states them all."""
    facts = [re.compile(pattern, re.IGNORECASE) for pattern in row["facts"]]
    found: list[tuple[str, Document]] = []
    for document in documents:
        if row.get("creator") and document.creator != row["creator"]:
            continue
        for block in document.blocks:
            sentences = [span.text for span in split_sentences(block.text)]
            for at in range(len(sentences)):
                for width in (1, 2, 3):
                    text = " ".join(sentences[at : at + width])
                    if all(fact.search(text) for fact in facts):
                        found.append((text, document))
                        break
    if not found:
        return None
    closeness = embed([text for text, _ in found]) @ embed([row["question"]])[0]
    return found[int(np.argmax(closeness))]


def load_sets(embed: EmbedQuestions) -> list[EvalSet]:
    sets = []
    for answers_file in [EVAL / "answers.jsonl", *sorted(EVAL.glob("*/answers.jsonl"))]:
        folder = answers_file.parent
        name = "demo" if folder == EVAL else folder.name
        rows = [json.loads(line) for line in answers_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        # A Debian set's corpus is built from its package when missing, as scripts.bench.quality builds it.
        content = DEMO_CONTENT if folder == EVAL else SETS[name].ensure_content()
        documents = _documents(content)
        moment = datetime.now(UTC)
        answers, questions = [], []
        for row in rows:
            creator = row.get("creator")
            own = "" if row.get("unanswerable") else row["id"]
            if own:
                passage = _passage(row, documents, embed)
                text, linked = (passage[0], [passage[1]]) if passage else ("", [])
                answer = CuratedView(
                    id=own, creator=creator, version=1, questions=[row["question"]], answer=text,
                    documents=[d.document_id for d in linked], topic_id=None, created_at=moment, updated_at=moment,
                    retired_at=None, titles=[d.title for d in linked],
                )  # fmt: skip
                answers.append(answer)
            questions.append(Question(own, row["question"], creator))
            if "follow_up" in row:  # answered by no curated answer here: any fit is a false one
                questions.append(Question("", row["follow_up"]["question"], creator))
        scope = {row["id"]: row.get("creator") for row in rows}
        paraphrases = []
        file = folder / "paraphrases.jsonl"
        if file.is_file():
            for line in file.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    paraphrases += [Question(row["id"], text, scope[row["id"]]) for text in row["paraphrases"]]
        sets.append(EvalSet(name, answers, questions, paraphrases, _creators(content)))
    return sets


class Judged:
    """Every (question, phrasing in its scope) pair judged once with no floor, so any threshold and penalty can be
    applied afterwards exactly as `AnswerIndex.best` would."""

    def __init__(self, embed: EmbedQuestions, data: EvalSet) -> None:
        self._embed = embed
        self._set = data
        self._cache: dict[tuple[str, str | None], tuple[Reading, np.ndarray]] = {}

    def _reading(self, text: str, creator: Creator | None) -> tuple[Reading, np.ndarray]:
        key = (text, creator.slug if creator else None)
        if key not in self._cache:
            reading = read(text, creator)
            self._cache[key] = (reading, embed_readings(self._embed, [reading])[0])
        return self._cache[key]

    def pairs(self, question: Question) -> list[tuple[str, Judgement]]:
        creator = self._set.creators.get(question.creator) if question.creator else None
        if question.creator and creator is None:
            creator = Creator(slug=question.creator, name=question.creator)
        asked, asked_vectors = self._reading(question.text, creator)
        judged = []
        for answer in self._set.answers:
            if answer.creator is not None and (creator is None or answer.creator != creator.slug):
                continue
            covered = answer_words(answer, creator)
            for phrasing in answer.questions:
                reading, vectors = self._reading(phrasing, creator)
                verdict = judge(asked, asked_vectors, reading, vectors, self._embed, penalty=0.0, covered=covered)
                judged.append((answer.id, verdict))
        return judged


def fits(pairs: Sequence[tuple[str, Judgement]], threshold: float, penalty: float, *, exclude: str = "") -> str | None:
    """The answer `AnswerIndex.best` would serve: the best score at or above the threshold, None when none fits."""
    best: tuple[float, str] | None = None
    for answer_id, verdict in pairs:
        if answer_id == exclude or verdict.refused is not None:
            continue
        score = verdict.at(penalty)
        if score >= threshold and (best is None or score > best[0]):
            best = (score, answer_id)
    return best[1] if best else None


Asked = list[tuple[Question, list[tuple[str, Judgement]]]]


def measure(judged: Asked, para: Asked, threshold: float, penalty: float) -> dict[str, float]:
    false = sum(1 for q, pairs in judged if fits(pairs, threshold, penalty, exclude=q.id) is not None)
    got = [fits(pairs, threshold, penalty) for _, pairs in para]
    matched = sum(1 for (q, _), answer in zip(para, got, strict=True) if answer == q.id)
    wrong = sum(1 for (q, _), answer in zip(para, got, strict=True) if answer not in (None, q.id))
    return {
        "questions": len(judged),
        "false_matches": false,
        "false_match_rate": false / len(judged) if judged else 0.0,
        "paraphrases": len(para),
        "paraphrases_matched": matched / len(para) if para else float("nan"),
        "paraphrases_wrong": wrong / len(para) if para else float("nan"),
    }


def second_phrasing(data: EvalSet, which: int) -> tuple[EvalSet, list[Question]]:
    """`data` with each answer's paraphrase number `which` added to its phrasings, and the paraphrases left to ask
    (the others): a curated answer after its curator took one visitor's rewording in."""
    taken: dict[str, str] = {}
    rest: list[Question] = []
    seen: dict[str, int] = {}
    for q in data.paraphrases:
        at = seen.get(q.id, 0)
        seen[q.id] = at + 1
        if at == which:
            taken[q.id] = q.text
        else:
            rest.append(q)
    answers = [replace(a, questions=[*a.questions, taken[a.id]]) if a.id in taken else a for a in data.answers]
    return replace(data, answers=answers, paraphrases=rest), rest


def question_cost(embedder: Any, questions: Sequence[str]) -> dict[str, float]:
    """What matching at the model's own precision costs a turn over the int8 twin's vector that the search already
    computed: milliseconds a question, each text new to both (their caches are apart), median of the questions."""
    texts = [f"{text} ({i})" for i, text in enumerate(questions)]  # new to this process's caches

    def median_ms(embed: Any) -> float:
        took = []
        for text in texts:
            started = time.perf_counter()
            embed(text)
            took.append(time.perf_counter() - started)
        return float(np.median(took) * 1000)

    return {
        "questions": len(texts),
        "fp32_ms": median_ms(embedder.embed_query_full),
        "twin_ms": median_ms(embedder.embed_query),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="Also write the results under bench-results/.")
    args = parser.parse_args()
    defaults = CuratedSettings()
    embedder = get_embedder(EmbeddingSettings())
    embed = question_embedder(embedder.embed_query_full)
    started = time.perf_counter()
    per_set = []
    for data in load_sets(embed):
        judge_all = Judged(embed, data)
        judged = [(q, judge_all.pairs(q)) for q in data.questions]
        para = [(q, judge_all.pairs(q)) for q in data.paraphrases]
        per_set.append((data, judged, para))
    took = time.perf_counter() - started

    def pooled(threshold: float, penalty: float) -> dict[str, float]:
        judged = [item for _, j, _ in per_set for item in j]
        para = [item for _, _, p in per_set for item in p]
        return measure(judged, para, threshold, penalty)

    rows = []
    for penalty in PENALTIES:
        for threshold in THRESHOLDS:
            m = pooled(threshold, penalty)
            rows.append([penalty, threshold, f"{m['false_match_rate']:.1%}", f"{m['paraphrases_matched']:.1%}",
                         f"{m['paraphrases_wrong']:.1%}"])  # fmt: skip
    benchlib.print_table(
        "All sets pooled: questions answered by another question's answer, paraphrases matched / wrongly matched",
        ["penalty", "threshold", "false matches", "paraphrases matched", "paraphrases wrong"],
        rows,
    )
    chosen = {"threshold": defaults.match_threshold, "penalty": defaults.substitution_penalty}
    results = []
    for data, judged, para in per_set:
        m = measure(judged, para, defaults.match_threshold, defaults.substitution_penalty)
        results.append({"set": data.name, "answers": len(data.answers), **m})
    pooled_now = pooled(defaults.match_threshold, defaults.substitution_penalty)
    results.append({"set": "all", "answers": sum(len(d.answers) for d, _, _ in per_set), **pooled_now})
    benchlib.print_table(
        f"At the defaults (threshold {defaults.match_threshold}, penalty {defaults.substitution_penalty})",
        ["set", "answers", "questions", "false matches", "paraphrases", "matched", "wrong"],
        [
            [r["set"], r["answers"], r["questions"], f"{r['false_matches']} ({r['false_match_rate']:.1%})",
             r["paraphrases"], f"{r['paraphrases_matched']:.1%}", f"{r['paraphrases_wrong']:.1%}"]
            for r in results
        ],
    )  # fmt: skip
    two = []
    for data, _, _ in per_set:
        judged2: Asked = []
        para2: Asked = []
        for which in (0, 1):
            varied, rest = second_phrasing(data, which)
            judge_varied = Judged(embed, varied)
            judged2 += [(q, judge_varied.pairs(q)) for q in varied.questions]
            para2 += [(q, judge_varied.pairs(q)) for q in rest]
        two.append((data, judged2, para2))
    results2 = []
    for data, judged2, para2 in two:
        m = measure(judged2, para2, defaults.match_threshold, defaults.substitution_penalty)
        results2.append({"set": data.name, **m})
    all_judged = [item for _, j, _ in two for item in j]
    all_para = [item for _, _, p in two for item in p]
    results2.append(
        {"set": "all", **measure(all_judged, all_para, defaults.match_threshold, defaults.substitution_penalty)}
    )
    benchlib.print_table(
        "Two phrasings an answer (its question and one paraphrase; the other paraphrase asked, both ways round)",
        ["set", "questions judged", "false matches", "paraphrases", "matched", "wrong"],
        [
            [r["set"], r["questions"], f"{r['false_matches']} ({r['false_match_rate']:.1%})", r["paraphrases"],
             f"{r['paraphrases_matched']:.1%}", f"{r['paraphrases_wrong']:.1%}"]
            for r in results2
        ],
    )  # fmt: skip
    print(f"\njudged in {took:.1f} s (questions at the model's own precision, as the service matches them)")
    cost = question_cost(embedder, [q.text for _, _, para in per_set for q, _ in para])
    print(
        f"a question embedded (median of {cost['questions']} paraphrases): fp32 {cost['fp32_ms']:.2f} ms, "
        f"{embedder.query_precision} {cost['twin_ms']:.2f} ms"
    )
    if args.json:
        path = benchlib.write_results(
            "curated",
            {
                "machine": benchlib.machine(),
                "chosen": chosen,
                "results": results,
                "two_phrasings": results2,
                "grid": rows,
                "cost": cost,
            },
        )
        print(f"results: {path}")


if __name__ == "__main__":
    main()
