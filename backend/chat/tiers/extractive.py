"""The `extractive` tier: no model; quotes the source sentences that answer the question, each cited.

Sentences are ranked by the retrieval model's similarity to the question (read by question.py: without its
boilerplate and the creator's name), the question's rarer words present, and whether they carry the kind of fact
asked for (relevance.py); the picks are diverse (MMR) and read in source order. Technical text is quoted whole: a
sentence that defines an option or a term comes with its term line ("-n, --dry-run: ..."), one that introduces code
with the code, in backticks, and the rest of the sentence after it ("... or: `createdb -O rolename dbname` from the
shell."), a step it leans on with that step's code; a sentence comes with the next one when that one denies it
("They are not.") or, asked for a name, names what it is about ("You can check it using checkbashisms(1)."). A
compound question or a comparison gets a sentence of its own for each part (its best one not in the answer yet; a
situation told before the questions belongs to no part); a question put to a creator in the second person is read in
their voice ("your starter" -> "my starter"); an elliptical follow-up ("And for IPv6?") leans on the question before
it as much as on its own words and keeps to what that question was about (a sentence saying the same of something
else is left out), and a follow-up does not get the answer before it again (a sentence that answer quoted counts
only for what the follow-up alone asks of it, unless it was quoted in passing and holds what is asked now), nor the
side of a pair it turned away from ("And after?" after "... before ...?": question.counterparts). The
personality weight changes the framing line only: the quoted sentences are the same at every dial position.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncGenerator
from dataclasses import replace
from functools import partial

import anyio

from backend.chat.personality import WARM
from backend.chat.prompt import Prompt, refusal_text, search_query_for
from backend.chat.tiers.base import AlwaysReady, TextDelta
from backend.grounding.coverage import follow_up_context
from backend.grounding.facts import quantities
from backend.grounding.question import (
    Question,
    as_asked_of,
    counterparts,
    is_elliptical,
    question_parts,
    read_question,
)
from backend.grounding.relevance import Candidate, rank, select
from backend.grounding.sentences import SentenceVectors
from backend.grounding.terms import text_terms
from backend.settings import EmbeddingSettings, TierSettings

# Sentences picked for an answer (each may bring what it leans on, its term, its code). Four, not three: the fourth
# best within the margin stated 4 more of the 376 facts asked over seven sets, and no set lost one (the
# median answer 78 -> 92 words); "how do I" questions had four already. BENCHMARKS.md, "Answer quality".
_MAX_PICKS = 4
_WORD = re.compile(r"\S+\s*")
_SENTENCE_END = re.compile(r"[.!?…:;][\"'”’)]*$")
# A follow-up's earlier question's words count this much in picking its sentences (its own count 1; the coverage
# check counts them 0.5): enough to tell what "And for how long?" is about, without outvoting what a follow-up asks
# itself ("And just a one-line description of a command?" after the read system call's manual page). Four sets.
_CONTEXT_TERM = 0.25
# An elliptical follow-up is about what the question before was about: a sentence this close to a pick that names
# less of it ("Barley bread needs fifty-five minutes." after spelt's, asked "And for how long?") is about something
# else: left out, in a pick's place (relevance.select). Four sets: no fact lost, 8 follow-up answers a sentence shorter.
_FOLLOW_PARALLEL = 0.5
# A follow-up that turns to the other side of a pair ("And the one that runs after each request?" after "... before
# every request?"): a sentence naming the side asked before and not the side asked now answers the question before,
# and ranks this much lower.
_OTHER_SIDE = 0.3


def _history(prompt: Prompt) -> list[tuple[str, str]]:
    """The conversation before this question, as the prompt carries it (system first, the question last)."""
    return [(m["role"], m["content"]) for m in prompt.messages[1:-1]]


def _follow_up_of(prompt: Prompt) -> str:
    """The earlier question(s) a follow-up leans on, from the history the prompt still carries."""
    return follow_up_context(prompt.question, search_query_for(prompt.question, _history(prompt)))


def _said_again(
    ranked: list[Candidate], alone: list[Candidate], said: str, *, asked: Question, asked_before: Question
) -> list[Candidate]:
    """A follow-up is read with the question before it, so the sentences that answered that one rank high again.
    One the answer before already said (quoted there, or stating only quantities it stated) is worth only what the
    follow-up alone asks of it: "And which codes mark it as bad?" after exit code 125 was quoted gets the 1-127
    sentence, "When should I go higher than that?" after sixty-eight percent does not get sixty-eight percent from
    another source; yet "And how do I ask for 80% instead?" still gets the sentence that said "-M8 ... 80%". A
    sentence the answer before quoted in passing is not an answer given: one stating a quantity in units the
    follow-up asks for and the question before did not ("And for how long?" after the temperature was asked) is
    what the follow-up asks now."""
    own = {(c.source, c.span.start): c.score for c in alone}
    stated = {q.value for q in quantities(said)}
    new_units = asked.units - asked_before.units

    def said_before(c: Candidate) -> bool:
        found = quantities(c.span.text)
        if new_units and any(q.unit in new_units for q in found):
            return False
        values = {q.value for q in found}
        return c.span.text in said or (bool(values) and values <= stated)

    rescored = [
        replace(c, score=min(c.score, own.get((c.source, c.span.start), c.score))) if said_before(c) else c
        for c in ranked
    ]
    return sorted(rescored, key=lambda c: -c.score)


def _on_the_side_asked(ranked: list[Candidate], turned: list[tuple[str, str]]) -> list[Candidate]:
    """Sentences on the side of a pair the question before asked about, and not on the side asked now, rank lower."""

    def other_side(c: Candidate) -> bool:
        terms = text_terms(c.span.text)
        return any(old in terms and new not in terms for old, new in turned)

    rescored = [replace(c, score=c.score - _OTHER_SIDE) if other_side(c) else c for c in ranked]
    return sorted(rescored, key=lambda c: -c.score)


def compose_answer(prompt: Prompt, vectors: SentenceVectors | None) -> str:
    """The whole answer, deterministic for a prompt; never says more than the sources do. CPU-bound (a
    thread): the question, and any source sentence not seen before, are embedded. Without `vectors` (the
    model still loading) the words and the kind of fact alone pick the sentences."""
    creator = prompt.creator
    first_person = creator is not None and prompt.personality_weight >= WARM
    if not prompt.covered or not prompt.sources:
        return refusal_text(creator, prompt.personality_weight, [hit.title for hit in prompt.sources])
    context = prompt.follow_up_of or _follow_up_of(prompt)
    question = as_asked_of(
        read_question(prompt.question, creator=creator, context=context, context_term=_CONTEXT_TERM), creator
    )
    before = read_question(context, creator=creator)  # the question before, alone
    context_focus = before.focus if context else ""
    # An elliptical follow-up ("And for a bare repository?") is read with the question before it in full.
    elliptical = bool(context) and is_elliptical(prompt.question)
    weight = 1.0 if elliptical else 0.5
    ranked = rank(question, prompt.sources, vectors, context_focus=context_focus, context_weight=weight)
    if context and prompt.said_before:
        asked = as_asked_of(read_question(prompt.question, creator=creator), creator)
        alone = rank(asked, prompt.sources, vectors)
        ranked = _said_again(ranked, alone, prompt.said_before, asked=asked, asked_before=before)
    turned = counterparts(prompt.question, context) if context else []
    if turned:
        ranked = _on_the_side_asked(ranked, turned)
    picked = select(
        ranked,
        limit=_MAX_PICKS,
        parallel=_FOLLOW_PARALLEL if elliptical else None,
    )
    parts = question_parts(prompt.question)
    if picked and len(parts) > 1:
        # A compound question or a comparison: each part gets a sentence of its own, its best one not in the answer
        # yet (the whole question's picks may hold a sentence on one part only, or one saying little of either).
        chosen = {(c.source, c.span.start) for c in picked}
        for part in parts:
            asked = as_asked_of(read_question(part, creator=creator, context=prompt.question), creator)
            ranked_part = rank(asked, prompt.sources, vectors, context_focus=question.focus)
            best = select([c for c in ranked_part if (c.source, c.span.start) not in chosen], limit=1)
            if best:
                chosen.add((best[0].source, best[0].span.start))
                picked.append(best[0])
        picked.sort(key=lambda c: (c.source, c.span.start))
    if not picked:
        return refusal_text(creator, prompt.personality_weight, [hit.title for hit in prompt.sources])
    if first_person:
        lead = "Here is what I wrote about it:"
    elif creator is not None:
        lead = f"Here is what {creator.name}'s content says:"
    else:
        lead = "Here is what the sources say:"
    return f"{lead} {' '.join(_quotes(picked))}"


def _quotes(picked: list[Candidate]) -> list[str]:
    """Each pick as quoted, cited: with the sentence it leans on, the term it defines ("-n, --dry-run: ..."), the
    code it introduces ("run: `make`") and, when brief, the sentence after it."""
    quoted: list[str] = []
    starts = {(c.source, c.span.start) for c in picked}
    labelled: set[tuple[int, str]] = set()

    def named(c: Candidate, text: str) -> str:
        """The first sentence quoted from a term's description goes after the term's name ("-n, --dry-run: ...")."""
        if not c.label or (c.source, c.label) in labelled:
            return text
        labelled.add((c.source, c.label))
        return f"{c.label}: {text}"

    for c in picked:
        leaning = c.leaning
        lead = c.lead
        if lead is not None and (c.source, lead.start) not in starts and all(x.start != lead.start for x in leaning):
            # A later sentence of a term's description: the first one says what the term does.
            starts.add((c.source, lead.start))
            quoted.append(f"{named(c, lead.text)} [{c.source}]")
        if leaning and (c.source, leaning[-1].start) not in starts:  # a picked one brings its own
            for leaned in leaning:
                if (c.source, leaned.start) not in starts:
                    starts.add((c.source, leaned.start))  # quoted once: a later pick may lean on it or lead with it
                    opens = lead is not None and leaned.start == lead.start  # the term's description opens here
                    text = named(c, leaned.text) if opens else leaned.text
                    code = dict(c.leaned_code).get(leaned.start)
                    quoted.append(f"{_with_code(text, code) if code else text} [{c.source}]")
        text = named(c, c.span.text)
        if c.code:
            text = _with_code(text, c.code, c.continued)
        quoted.append(f"{text} [{c.source}]")
        if c.example is not None:
            line, code = c.example
            quoted.append(f"{_with_code(line, code)} [{c.source}]")
        if c.items:
            # The list it announces, each item as the source writes it, a sentence each (so each is checked).
            for item in c.items:
                if (c.source, item.start) not in starts:
                    quoted.append(f"{item.text} [{c.source}]")
        elif c.completed_by is not None and (c.source, c.completed_by.start) not in starts:
            starts.add((c.source, c.completed_by.start))
            quoted.append(f"{c.completed_by.text} [{c.source}]")
        elif c.is_brief and c.following is not None and (c.source, c.following.start) not in starts:
            quoted.append(f"{c.following.text} [{c.source}]")
    # A sentence two sources share (a page and its copy) is said once, however it came along (picked in one source,
    # leaned on in the other): the first citation stands.
    texts: set[str] = set()
    once = []
    for quote in quoted:
        text, cited = quote.rsplit(" [", 1)
        if text not in texts:
            texts.add(text)
            once.append(f"{_as_sentence(text)} [{cited}")
    return once


def _as_sentence(text: str) -> str:
    """A quote ended as a sentence, so that the claim check reads each quote as a claim of its own: a table row, a
    code line or a term line quoted as it stands ends in no full stop, and ran on into the next quote."""
    return text if _SENTENCE_END.search(text) else f"{text}."


def _with_code(text: str, code: str, continued: tuple[tuple[str, str], ...] = ()) -> str:
    """A sentence with the code it introduces, each line in backticks, and the rest of the sentence when it goes on
    after the code ("... or: `createdb -O rolename dbname` from the shell.")."""
    text = f"{text} {_as_code(code)}"
    for part, more in continued:
        text = f"{text} {part} {_as_code(more)}" if more else f"{text} {part}"
    # Ended like a sentence, as the claim check reads it.
    return text if text.endswith((".", "!", "?", "…")) else f"{text}."


def _as_code(code: str) -> str:
    """Each line as inline code; a line holding a backtick itself (``# avail=`mktemp` ``) in double ones, as
    Markdown reads it; the "…" closing a long block's opening lines as it stands."""
    return "; ".join(
        line if line == "…" else f"`` {line} ``" if "`" in line else f"`{line}`" for line in code.splitlines()
    )


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
