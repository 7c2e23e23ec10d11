"""The `extractive` tier: no model; quotes the source sentences that answer the question, each cited.

Sentences are ranked by the retrieval model's similarity to the question (without its boilerplate and the
creator's name), the question's rarer words present, and whether they carry the kind of fact asked for
(relevance.py); the picks are diverse (MMR) and read in source order. The personality weight changes the
framing line only: the quoted sentences are the same at every dial position.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncGenerator
from functools import partial

import anyio

from backend.chat.personality import WARM
from backend.chat.prompt import Prompt, refusal_text, search_query_for
from backend.chat.tiers.base import AlwaysReady, TextDelta
from backend.grounding.relevance import FactKind, rank, read_question, select
from backend.grounding.sentences import SentenceVectors
from backend.settings import EmbeddingSettings, TierSettings

_MAX_SENTENCES = 3
_MAX_STEPS = 4  # "how do I" answers read better with one more step
_WORD = re.compile(r"\S+\s*")


def _history(prompt: Prompt) -> list[tuple[str, str]]:
    """The conversation before this question, as the prompt carries it (system first, the question last)."""
    return [(m["role"], m["content"]) for m in prompt.messages[1:-1]]


def compose_answer(prompt: Prompt, vectors: SentenceVectors | None) -> str:
    """The whole answer, deterministic for a prompt; never says more than the sources do. CPU-bound (a
    thread): the question, and any source sentence not seen before, are embedded. Without `vectors` (the
    model still loading) the words and the kind of fact alone pick the sentences."""
    creator = prompt.creator
    first_person = creator is not None and prompt.personality_weight >= WARM
    if not prompt.covered or not prompt.sources:
        return refusal_text(creator, prompt.personality_weight, [hit.title for hit in prompt.sources])
    expanded = search_query_for(prompt.question, _history(prompt))
    context = expanded[: -len(prompt.question)].strip() if expanded.endswith(prompt.question) else ""
    question = read_question(prompt.question, creator=creator, context=context)
    context_focus = read_question(context, creator=creator).focus if context else ""
    ranked = rank(question, prompt.sources, vectors, context_focus=context_focus)
    picked = select(ranked, limit=_MAX_STEPS if question.kind is FactKind.steps else _MAX_SENTENCES)
    if not picked:
        return refusal_text(creator, prompt.personality_weight, [hit.title for hit in prompt.sources])
    if first_person:
        lead = "Here is what I wrote about it:"
    elif creator is not None:
        lead = f"Here is what {creator.name}'s content says:"
    else:
        lead = "Here is what the sources say:"
    quoted: list[str] = []
    starts = {(c.source, c.span.start) for c in picked}
    for c in picked:
        if c.leans_back and c.previous is not None and (c.source, c.previous.start) not in starts:
            quoted.append(f"{c.previous.text} [{c.source}]")
        quoted.append(f"{c.span.text} [{c.source}]")
        if c.is_brief and c.following is not None and (c.source, c.following.start) not in starts:
            quoted.append(f"{c.following.text} [{c.source}]")
    return f"{lead} {' '.join(quoted)}"


def default_vectors() -> SentenceVectors:
    """The default embedding model, loaded on first use (the app passes the one it configured)."""
    from backend.retrieval.embedder import get_embedder

    return SentenceVectors(partial(get_embedder, EmbeddingSettings()))


class ExtractiveTier(AlwaysReady):
    kind = "extractive"

    def __init__(self, settings: TierSettings, *, vectors: SentenceVectors | None = None) -> None:
        self.name = settings.name
        self.settings = settings
        self._vectors = vectors or default_vectors()
        self._loader: threading.Thread | None = None

    async def warm(self, *, wait_seconds: float = 0.0) -> None:
        # The service loads the model before this (the retriever's own): resolving it here is instant.
        await anyio.to_thread.run_sync(self._vectors.load)

    async def stream(self, prompt: Prompt) -> AsyncGenerator[TextDelta, None]:
        # The last resort never waits for a model load (seconds on a small machine): until the model is in
        # memory (loading in the background) it answers from words alone.
        vectors = self._vectors if self._vectors.loaded else None
        if vectors is None and self._loader is None:
            self._loader = threading.Thread(target=self._vectors.load, name="lorechat-extractive-model", daemon=True)
            self._loader.start()
        # Embedding is CPU-bound: off the event loop, so other streams keep flowing meanwhile.
        answer = await anyio.to_thread.run_sync(compose_answer, prompt, vectors)
        for word in _WORD.findall(answer):
            yield TextDelta(text=word)
            # Yield control between words so many extractive streams share the loop fairly.
            await asyncio.sleep(0)
        yield TextDelta(text="", finish_reason="stop")

    async def aclose(self) -> None:
        return None
