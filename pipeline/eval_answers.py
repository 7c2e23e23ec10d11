"""Answer quality through the real service path: fact recall, citation precision, unsupported claims, refusals, TTFT.

A question set is JSON lines: `{"id", "question", "creator"?, "facts": [regex...], "follow_up"?: {"question",
"facts"}}` or `{"id", "question", "creator"?, "unanswerable": true}`. Each turn runs through the app's own
lifespan and `ChatService.prepare` / `run` (as `lorechat ask` does), so retrieval, coverage, the tier cascade
and the claim check are the ones visitors get. Figures are grouped by the tier that answered.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.app import create_app
from backend.chat.service import TurnRequest
from backend.errors import ErrorCode, LorechatError
from backend.grounding.facts import without_citations
from backend.settings import Settings
from backend.stream.events import Citation, DoneEvent, ErrorEvent, SourcesEvent


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    question: str
    creator: str | None
    facts: tuple[str, ...]
    unanswerable: bool
    follow_up: Question | None = None


@dataclass(slots=True)
class TurnResult:
    id: str
    question: str
    unanswerable: bool
    facts: tuple[str, ...]
    answer: str = ""
    tier: str = ""
    unanswered: bool = False
    citations: list[Citation] = field(default_factory=list)
    ttft_ms: float | None = None
    error: str | None = None

    @property
    def facts_found(self) -> int:
        return facts_stated(self.facts, self.answer)


def facts_stated(facts: tuple[str, ...], answer: str) -> int:
    """How many of a turn's key facts (patterns) the answer states, its citation markers left out: a fact asking for
    a bare number ("4" workers) is not stated by a citation of source [4]."""
    said = without_citations(answer)
    return sum(1 for fact in facts if re.search(fact, said, re.IGNORECASE))


def load_questions(path: Path) -> list[Question]:
    """Parse a question set; a bad line is a clear error naming the line."""
    questions: list[Question] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            questions.append(_question(row, f"line{number}"))
        except (ValueError, KeyError, TypeError, re.error) as exc:
            raise LorechatError(ErrorCode.invalid_input, f"{path}:{number}: not a question line ({exc})") from exc
    if not questions:
        raise LorechatError(ErrorCode.invalid_input, f"{path} holds no questions")
    return questions


def _question(row: dict[str, Any], fallback_id: str, creator: str | None = None) -> Question:
    text = row["question"]
    if not isinstance(text, str) or not text.strip():
        raise ValueError("question must be a non-empty string")
    facts = tuple(row.get("facts", ()))
    for fact in facts:
        if any(ord(char) < 32 for char in fact):  # "\\b" written as "\b" in JSON is a backspace, not a word boundary
            raise ValueError(f"fact pattern {fact!r} holds a control character (escape regex backslashes twice)")
        re.compile(fact)
    unanswerable = bool(row.get("unanswerable", False))
    if unanswerable == bool(facts):
        raise ValueError("give either facts (regexes) or unanswerable: true")
    creator = row.get("creator", creator)
    question_id = str(row.get("id", fallback_id))
    follow = row.get("follow_up")
    return Question(
        id=question_id,
        question=text,
        creator=creator,
        facts=facts,
        unanswerable=unanswerable,
        follow_up=_question(follow, f"{question_id}f", creator) if follow else None,
    )


class _Collector:
    """The turn's events, as a sink: the answer text, when its first piece came, and `done`."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.parts: list[str] = []
        self.first: float | None = None
        self.done: DoneEvent | None = None
        self.error: ErrorEvent | None = None

    async def send(self, event: SourcesEvent | DoneEvent | ErrorEvent) -> None:
        if isinstance(event, DoneEvent):
            self.done = event
        elif isinstance(event, ErrorEvent):
            self.error = event

    async def send_text(self, text: str) -> None:
        if self.first is None:
            self.first = time.perf_counter()
        self.parts.append(text)

    def detach(self) -> None:
        """The eval reads every event in process; it never leaves."""


def turn_count(questions: Sequence[Question]) -> int:
    """Turns the set makes: each question and its chain of follow-ups."""
    total = 0
    for question in questions:
        turn: Question | None = question
        while turn is not None:
            total += 1
            turn = turn.follow_up
    return total


async def run_questions(
    settings: Settings,
    questions: Sequence[Question],
    *,
    personality_weight: float = 0.0,
    on_turn: Callable[[TurnResult], None] | None = None,
) -> list[TurnResult]:
    """Every question (and its follow-up, in the same conversation) through the service, in order; `on_turn`
    hears of each finished turn (a local model takes seconds per turn: the CLI shows progress)."""
    app = create_app(settings, wait_for_models_seconds=60.0)
    results: list[TurnResult] = []
    async with app.router.lifespan_context(app) as state:
        assert state is not None
        chat, catalog = state["chat"], state["catalog"]
        for question in questions:
            conversation: str | None = None
            turn: Question | None = question
            while turn is not None:
                profile = catalog.creator(turn.creator) if turn.creator else None
                if turn.creator and profile is None:
                    raise LorechatError(ErrorCode.unknown_creator, f"{turn.id}: unknown creator '{turn.creator}'")
                result = TurnResult(turn.id, turn.question, turn.unanswerable, turn.facts)
                started = time.perf_counter()
                sink = _Collector(started)
                prepared = await chat.prepare(
                    TurnRequest(
                        question=turn.question,
                        creator=profile,
                        conversation_id=conversation,
                        personality_weight=personality_weight,
                        owner_id=None,
                        request_id=f"eval-{turn.id}",
                    )
                )
                await chat.run(prepared, sink)
                result.answer = "".join(sink.parts)
                result.ttft_ms = (sink.first - started) * 1000 if sink.first is not None else None
                if sink.done is not None:
                    result.tier = sink.done.cascade_tier
                    result.unanswered = sink.done.unanswered
                    result.citations = sink.done.citations
                    conversation = sink.done.conversation_id
                else:
                    result.error = sink.error.code if sink.error else "no terminal event"
                results.append(result)
                if on_turn is not None:
                    on_turn(result)
                turn = turn.follow_up
    return results


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def summarize(results: Sequence[TurnResult]) -> dict[str, dict[str, float]]:
    """Per tier that answered: fact recall, citation precision (share of cited claims supported), unsupported
    claim rate, false refusals (answerable turns refused), missed refusals (unanswerable ones answered), TTFT."""
    by_tier: dict[str, list[TurnResult]] = defaultdict(list)
    for result in results:
        by_tier[result.tier or "error"].append(result)
    report: dict[str, dict[str, float]] = {}
    for tier, turns in sorted(by_tier.items()):
        answerable = [t for t in turns if not t.unanswerable]
        unanswerable = [t for t in turns if t.unanswerable]
        claims = [c for t in turns for c in t.citations if c.claim]
        cited = [c for c in claims if c.sources]
        ttfts = sorted(t.ttft_ms for t in turns if t.ttft_ms is not None)
        report[tier] = {
            "turns": len(turns),
            "fact_recall": _rate(sum(t.facts_found for t in answerable), sum(len(t.facts) for t in answerable)),
            "citation_precision": _rate(sum(c.supported for c in cited), len(cited)),
            "unsupported_claim_rate": _rate(sum(not c.supported for c in claims), len(claims)),
            "false_refusal_rate": _rate(sum(t.unanswered for t in answerable), len(answerable)),
            "missed_refusal_rate": _rate(sum(not t.unanswered for t in unanswerable), len(unanswerable)),
            "ttft_p50_ms": statistics.median(ttfts) if ttfts else 0.0,
            "ttft_p99_ms": ttfts[min(len(ttfts) - 1, round(0.99 * (len(ttfts) - 1)))] if ttfts else 0.0,
            "errors": sum(1 for t in turns if t.error),
        }
    return report
