"""The extractive tier's answers composed again from recorded prompts (issue 37): seconds a variant, not minutes.

What the extractive tier says depends only on the prompt the service hands it (the question, the ranked sources,
coverage's verdict, the question before and the answer before). `--record` runs each answer set through the
service once, as `scripts.bench.quality` does, and stores every turn's `Prompt` under
`bench-results/answer-prompts/`. Without it, the bench composes every recorded turn again with the current code
(a follow-up gets the new answer before it, as the service would give it) and prints fact recall and refusals per
set, and the turns whose answer changed. `--select M/D,...` scores the sentence selection's margin and diversity
on a grid, with the per-set rule (BENCHMARKS.md: a change is kept only if the mean rises and no set loses more
than 0.01) against the first pair.

It agrees with `scripts.bench.quality` turn for turn as long as retrieval, coverage and the prompt are what they
were when the prompts were recorded: record again after changing any of them. Citation precision needs the claim
check of the whole service: the quality bench measures it.

    .venv/bin/python -m scripts.bench.answer_replay --record                 # once: every set through the service
    .venv/bin/python -m scripts.bench.answer_replay                          # the current code, turns that changed
    .venv/bin/python -m scripts.bench.answer_replay --select 0.15/0.3,0.2/0.2 --sets gitdocs,handbook
"""

from __future__ import annotations

import argparse
import pickle
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from backend.chat.prompt import Prompt
from backend.chat.tiers import extractive
from backend.grounding import relevance
from backend.grounding.sentences import SentenceVectors
from backend.settings import get_settings
from pipeline.eval_answers import TurnResult, facts_stated, load_questions, run_questions
from pipeline.eval_answers_cli import indexed_settings
from pipeline.eval_sets import SETS
from scripts.bench import benchlib
from scripts.bench.quality import extractive_only, keeps

ANSWER_SETS = [name for name, shipped in SETS.items() if shipped.answers is not None]
PROMPTS = benchlib.RESULTS / "answer-prompts"


@dataclass(frozen=True, slots=True)
class Turn:
    id: str
    facts: tuple[str, ...]
    unanswerable: bool
    answer: str  # what the service answered when recorded
    prompt: Prompt


def record(name: str) -> list[Turn]:
    """One run of the set through the service (the extractive tier only), keeping every prompt the tier got."""
    shipped = SETS[name]
    questions = shipped.answers
    assert questions is not None
    settings = extractive_only(get_settings())
    prompts: list[Prompt] = []
    compose = extractive.compose_answer

    def recording(prompt: Prompt, vectors: SentenceVectors | None) -> str:
        prompts.append(prompt)
        return compose(prompt, vectors)

    turns: list[Turn] = []

    def keep(result: TurnResult) -> None:
        if len(prompts) != 1:
            raise SystemExit(f"{name} {result.id}: the extractive tier composed {len(prompts)} answers, not one")
        turns.append(Turn(result.id, result.facts, result.unanswerable, result.answer, prompts.pop()))
        print(f"\r[{name}] {len(turns)} turns", end="", file=sys.stderr, flush=True)

    work = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    extractive.compose_answer = recording  # the tier looks it up at each call
    try:
        evaluated = indexed_settings(settings, shipped.ensure_content(), work)
        anyio.run(lambda: run_questions(evaluated, load_questions(questions), on_turn=keep))
    finally:
        extractive.compose_answer = compose
        shutil.rmtree(work, ignore_errors=True)
    print(file=sys.stderr)
    return turns


def replay(turns: list[Turn], vectors: SentenceVectors) -> dict[str, str]:
    """Every turn composed again; a follow-up ("<id>f") gets its parent's new answer as the answer before it."""
    answers: dict[str, str] = {}
    for turn in turns:
        prompt = turn.prompt
        parent = answers.get(turn.id[:-1]) if turn.id.endswith("f") else None
        if parent is not None and prompt.said_before:
            prompt = replace(prompt, said_before=parent)
        answers[turn.id] = extractive.compose_answer(prompt, vectors)
    return answers


def score(turns: list[Turn], answers: dict[str, str]) -> dict[str, float]:
    """Fact recall (facts stated / facts asked, answerable turns) and refusals, as `pipeline.eval_answers` counts
    them: a turn is refused when coverage said so (the tier then refuses whatever it is given)."""
    answerable = [t for t in turns if not t.unanswerable]
    unanswerable = [t for t in turns if t.unanswerable]
    found = sum(facts_in(t, answers[t.id]) for t in answerable)
    return {
        "fact_recall": found / max(1, sum(len(t.facts) for t in answerable)),
        "false_refusal_rate": sum(not t.prompt.covered for t in answerable) / max(1, len(answerable)),
        "missed_refusal_rate": sum(t.prompt.covered for t in unanswerable) / max(1, len(unanswerable)),
    }


def facts_in(turn: Turn, answer: str) -> int:
    return facts_stated(turn.facts, answer)


def load(path: Path) -> list[Turn]:
    if not path.exists():
        raise SystemExit(f"no recorded prompts in {path}: run with --record first")
    rows: list[dict[str, Any]] = pickle.loads(path.read_bytes())  # written by --record on this machine
    return [Turn(**row) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default=",".join(ANSWER_SETS), help="Comma-separated answer sets.")
    parser.add_argument("--record", action="store_true", help="Run each set through the service; store prompts.")
    parser.add_argument("--select", help="Margin/diversity pairs to score, e.g. 0.15/0.3,0.2/0.2 (first: baseline).")
    parser.add_argument("--show", action="store_true", help="Print every changed turn's answers in full.")
    parser.add_argument("--prompts", type=Path, default=PROMPTS, help=f"Where prompts are stored (default {PROMPTS}).")
    args = parser.parse_args()
    names = args.sets.split(",")
    unknown = [name for name in names if name not in ANSWER_SETS]
    if unknown:
        raise SystemExit(f"unknown answer sets {unknown}; known: {', '.join(ANSWER_SETS)}")
    if args.record:
        args.prompts.mkdir(parents=True, exist_ok=True)
        for name in names:
            # Plain fields, so that any module can read them (a pickled class is looked up by its module's name).
            stored = [{field: getattr(t, field) for field in Turn.__slots__} for t in record(name)]
            (args.prompts / f"{name}.pkl").write_bytes(pickle.dumps(stored))
    sets = {name: load(args.prompts / f"{name}.pkl") for name in names}
    vectors = extractive.default_vectors()
    vectors.load()

    if args.select:
        grid = [tuple(float(x) for x in pair.split("/")) for pair in args.select.split(",")]
        scored: dict[tuple[float, ...], dict[str, float]] = {}
        original = extractive.select
        try:
            for margin, diversity in grid:
                extractive.select = partial(relevance.select, margin=margin, diversity=diversity)
                scored[(margin, diversity)] = {
                    name: score(turns, replay(turns, vectors))["fact_recall"] for name, turns in sets.items()
                }
        finally:
            extractive.select = original
        base = scored[grid[0]]
        rows: list[list[Any]] = []
        for pair, recall in scored.items():
            gains = {name: recall[name] - base[name] for name in names}
            verdict = "base" if pair == grid[0] else ("keep" if keeps(gains) else "reject")
            rows.append(
                [
                    f"{pair[0]:g} / {pair[1]:g}",
                    *(f"{recall[n]:.3f}" for n in names),
                    f"{statistics.fmean(recall.values()):.3f}",
                    verdict,
                ]
            )
        benchlib.print_table(
            "Fact recall per margin / diversity (replayed prompts; the rule against the first pair)",
            ["margin / diversity", *names, "mean", "verdict"],
            rows,
        )
        return

    rows = []
    changed: list[tuple[str, Turn, str]] = []
    for name, turns in sets.items():
        answers = replay(turns, vectors)
        before = score(turns, {t.id: t.answer for t in turns})
        after = score(turns, answers)
        moved = [(name, t, answers[t.id]) for t in turns if answers[t.id] != t.answer and not t.unanswerable]
        changed += moved
        rows.append(
            [name, len(turns), f"{before['fact_recall']:.3f}", f"{after['fact_recall']:.3f}"]
            + [f"{after[k]:.3f}" for k in ("false_refusal_rate", "missed_refusal_rate")]
            + [len(moved)]
        )
    benchlib.print_table(
        "Extractive answers composed again from recorded prompts (fact recall recorded -> now)",
        ["set", "turns", "recorded", "now", "false refusals", "missed refusals", "answers changed"],
        rows,
    )
    for name, turn, answer in changed:
        print(
            f"[{name}] {turn.id}: facts {facts_in(turn, turn.answer)} -> {facts_in(turn, answer)} of "
            f"{len(turn.facts)}  {turn.prompt.question!r}"
        )
        if args.show:
            print(f"    before: {turn.answer}\n    now:    {answer}")


if __name__ == "__main__":
    main()
