"""Follow-ups the answering model proposes (`curated.model_suggestions`, backend/chat/follow_ups.py), against the
scripted OpenAI-compatible server: asked after the answer with the turn's sections, kept only when the sources answer
them and the visitor has not asked them; an upstream that fails or stalls at that step costs only its proposals, and
the turn still ends with `done` and the other follow-ups (CA10)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager

from backend.app import create_app
from backend.chat.follow_ups import parse_questions
from backend.settings import CuratedSettings
from pipeline.indexer import Indexer
from tests.backend.api.harness import UPSTREAM, AsgiApp, Backend, extractive_tier, make_settings, upstream_tier
from tests.backend.api.streams import assert_turn_stored, post_chat
from tests.data_dirs import copy_data_dir
from tests.fakes import Script, ScriptedOpenAI

pytestmark = pytest.mark.asyncio(loop_scope="module")

CREATOR = "hazel-marsh"
ASKED = "How much salt does Hazel use?"
ANSWERABLE = "Why does Hazel add the salt after the rest?"
ELSEWHERE = "What is the capital of France?"  # nothing in the sources answers it
ANSWER = Script(tokens=["Two", " percent", " of", " the", " flour", " [1]."])
PROPOSALS = [f"1. {ANSWERABLE}\n", f"2. {ELSEWHERE}\n", f"3. {ASKED}\n"]
BUDGET = 1.0  # curated.model_suggestions_seconds: what the step may hold `done` back


@asynccontextmanager
async def _app(template: Path, workdir: Path, fake: ScriptedOpenAI, *, seconds: float) -> AsyncIterator[AsgiApp]:
    """The app in process with the scripted upstream first, the extractive tier behind it, model follow-ups on."""
    data_dir = workdir / "data"
    copy_data_dir(template, data_dir)
    base = make_settings(
        data_dir=data_dir, backend=Backend("embedded", "", ""), tiers=[upstream_tier(fake), extractive_tier()]
    )
    curated = CuratedSettings(model_suggestions=True, model_suggestions_seconds=seconds, model_suggestions_tokens=48)
    settings = base.model_copy(update={"curated": curated})
    app = create_app(settings, ingest=partial(Indexer.from_settings, settings))
    async with LifespanManager(app, startup_timeout=120) as manager:
        yield AsgiApp(base_url="http://lorechat.test", settings=settings, app=manager.app)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def app(
    fake: ScriptedOpenAI, api_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AsgiApp]:
    async with _app(api_index, tmp_path_factory.mktemp("follow-ups"), fake, seconds=BUDGET) as app:
        yield app


async def test_ca10_the_answering_model_proposes_follow_ups_kept_when_the_sources_answer_them(
    app: AsgiApp, upstream: ScriptedOpenAI
) -> None:
    upstream.enqueue(ANSWER, Script(tokens=PROPOSALS))
    async with app.client() as client:
        reply = await post_chat(client, {"query": ASKED, "creator": CREATOR})
        async with app.db() as sessions:
            await assert_turn_stored(sessions, reply, question=ASKED)
        done = reply.stream.done
        assert done["cascade_tier"] == UPSTREAM
        suggestions = done["suggestions"]
        assert ANSWERABLE in suggestions  # the model's, checked against the sources
        assert ELSEWHERE not in suggestions and ASKED not in suggestions and len(suggestions) <= 3
        # One request for the answer, one for the follow-ups: the turn's sections, its question and its answer, and
        # the token budget of the step.
        assert len(upstream.requests) == 2
        asked_for = upstream.requests[1]
        assert asked_for["max_tokens"] == 48
        prompt = asked_for["messages"][-1]["content"]
        assert f"The visitor asked: {ASKED}" in prompt and "Two percent of the flour [1]." in prompt
        assert "Salt and Patience in a Home Kitchen" in prompt
        assert asked_for["messages"][0] == upstream.requests[0]["messages"][0]  # the answer's system prompt

        # Asking it does not end in a refusal (and the model, asked again, proposes nothing usable this time).
        upstream.enqueue(ANSWER, Script(tokens=["Nothing", " to", " add", "."]))
        follow = await post_chat(
            client, {"query": ANSWERABLE, "creator": CREATOR, "conversation_id": reply.conversation_id}
        )
    assert not follow.stream.done["unanswered"]
    assert ASKED not in follow.stream.done["suggestions"] and ANSWERABLE not in follow.stream.done["suggestions"]


@pytest.mark.parametrize(
    "failure",
    [
        Script(status=500),
        Script(status=429, retry_after=30),
        Script(error_as_first_chunk=True),
        Script(tokens=PROPOSALS, drop_after=1),
    ],
    ids=["500", "429", "error-chunk", "dropped"],
)
async def test_ca10_a_follow_up_request_that_fails_costs_only_its_proposals(
    app: AsgiApp, upstream: ScriptedOpenAI, failure: Script
) -> None:
    upstream.enqueue(ANSWER, failure)
    async with app.client() as client:
        reply = await post_chat(client, {"query": ASKED, "creator": CREATOR})
    done = reply.stream.done
    assert done["cascade_tier"] == UPSTREAM and done["finish_reason"] == "stop"
    assert ELSEWHERE not in done["suggestions"] and ASKED not in done["suggestions"]
    assert done["suggestions"], "the headings' and titles' follow-ups still come"
    assert len(upstream.requests) == 2


async def test_ca10_a_stalled_follow_up_request_is_cut_off_and_keeps_the_lines_it_finished(
    app: AsgiApp, upstream: ScriptedOpenAI
) -> None:
    # The first line arrives, then the upstream goes silent until the client leaves: the budget cuts it off.
    upstream.enqueue(ANSWER, Script(tokens=PROPOSALS, stall_after=1))
    async with app.client() as client:
        reply = await post_chat(client, {"query": ASKED, "creator": CREATOR})
    done = reply.stream.done
    assert done["cascade_tier"] == UPSTREAM
    assert ANSWERABLE in done["suggestions"]  # the one complete line before the stall
    assert upstream.wait_streams_closed(5)  # the stalled request was closed, not left open
    assert upstream.disconnects >= 1

    # Silent from the start: no proposals at all, the turn still ends with done and the other follow-ups.
    upstream.enqueue(ANSWER, Script(tokens=PROPOSALS, first_token_delay=30))
    async with app.client() as client:
        silent = await post_chat(client, {"query": ASKED, "creator": CREATOR})
    assert silent.stream.done["cascade_tier"] == UPSTREAM
    assert silent.stream.done["suggestions"] and ANSWERABLE not in silent.stream.done["suggestions"]


async def test_ca10_only_a_model_tier_that_answered_is_asked(app: AsgiApp, upstream: ScriptedOpenAI) -> None:
    upstream.enqueue(Script(status=500))  # the model fails: the extractive tier answers, and proposes nothing
    async with app.client() as client:
        reply = await post_chat(client, {"query": ASKED, "creator": CREATOR})
    assert reply.stream.done["cascade_tier"] == "extractive"
    assert len(upstream.requests) == 1  # the failed answer only: no follow-up request


async def test_ca10_a_models_reply_is_read_one_question_a_line() -> None:
    reply = (
        "Here are some follow-ups:\n"
        "1. Why does Hazel add the salt after the rest? [1]\n"
        "- What happens if the salt is forgotten?\n"
        '* "How long is the bulk rise?"\n'
        "Q3: Does salt slow the yeast?\n"
        "1. Why does Hazel add the salt after the rest?\n"
        "Short?\n"
        "A line that is no question."
    )
    assert parse_questions(reply) == [
        "Why does Hazel add the salt after the rest?",
        "What happens if the salt is forgotten?",
        "How long is the bulk rise?",
        "Does salt slow the yeast?",
    ]
