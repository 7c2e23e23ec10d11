"""Tier faults seen over HTTP (F7-F9, F11): what the client receives, what is stored, how often upstream is hit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.settings import CircuitSettings
from tests.backend.api.harness import (
    EXTRACTIVE,
    UPSTREAM,
    Backend,
    LiveApp,
    extractive_tier,
    live_app,
    upstream_tier,
)
from tests.backend.api.streams import assert_turn_stored, post_chat
from tests.fakes import Script, ScriptedOpenAI

QUESTION = "How long should I let the dough proof?"
TOKENS = ["Proof", " it", " for", " hours", " [1]", "."]


async def test_f7_first_token_timeout_falls_back_to_extractive(main_app: LiveApp, upstream: ScriptedOpenAI, db) -> None:
    # The upstream's first token would come after 6 s; the tier gives up after 1 s. The whole turn ending well
    # before 6 s shows the fallback did not wait for the late token (the margin absorbs a loaded machine:
    # retrieval, a cold coverage check and the final write come on top of the 1 s).
    upstream.enqueue(Script(tokens=["Too", " late"], first_token_delay=6))
    started = time.monotonic()
    async with main_app.client() as client:
        reply = await post_chat(client, {"query": QUESTION, "creator": "hazel-marsh"})
    stream = reply.stream
    assert time.monotonic() - started < 5
    assert len(stream.named("sources")) == 1 and len(stream.named("done")) == 1
    assert stream.done["cascade_tier"] == EXTRACTIVE
    assert "Too" not in stream.text and "[1]" in stream.text  # tokens of the extractive tier only
    answer = await assert_turn_stored(db, reply, question=QUESTION)
    assert answer.cascade_tier == EXTRACTIVE
    assert len(upstream.requests) == 1  # INV-5


@pytest.fixture
def flaky_app(backend: Backend, fake: ScriptedOpenAI, api_index: Path, tmp_path: Path) -> Iterator[LiveApp]:
    """A fresh app whose upstream circuit opens on the first failure (its breakers start closed)."""
    with live_app(
        template=api_index,
        workdir=tmp_path,
        backend=backend,
        tiers=[upstream_tier(fake), extractive_tier()],
        circuit=CircuitSettings(failure_threshold=1, cooldown_seconds=30),
    ) as app:
        yield app


@pytest.mark.parametrize(
    "script",
    [Script(status=500), Script(status=429, retry_after=90), Script(error_as_first_chunk=True)],
    ids=["500", "429-retry-after", "error-first-chunk"],
)
async def test_f8_upstream_error_falls_back_and_opens_the_circuit(
    flaky_app: LiveApp, upstream: ScriptedOpenAI, script: Script
) -> None:
    upstream.enqueue(script)
    async with flaky_app.client() as client, flaky_app.db() as db:
        first = await post_chat(client, {"query": QUESTION})
        assert first.stream.done["cascade_tier"] == EXTRACTIVE
        await assert_turn_stored(db, first, question=QUESTION)
        assert len(upstream.requests) == 1

        second = await post_chat(client, {"query": QUESTION})
        assert second.stream.done["cascade_tier"] == EXTRACTIVE
        await assert_turn_stored(db, second, question=QUESTION)
        ready = (await client.get("/readyz")).json()
    assert len(upstream.requests) == 1  # INV-5: the open circuit kept the second turn off the upstream
    assert ready["status"] == "degraded" and ready["checks"]["tiers"][UPSTREAM] == "open"


async def test_f9_drop_after_tokens_is_an_error_with_the_partial_kept(
    main_app: LiveApp, upstream: ScriptedOpenAI, db
) -> None:
    upstream.enqueue(Script(tokens=TOKENS, drop_after=3))
    async with main_app.client() as client:
        reply = await post_chat(client, {"query": QUESTION})
    stream = reply.stream
    assert stream.text == "".join(TOKENS[:3])  # no silent switch to another tier mid-answer
    error = stream.terminal.data
    assert stream.terminal.name == "error" and error["code"] == "upstream_interrupted" and error["retryable"]
    answer = await assert_turn_stored(db, reply, question=QUESTION)
    assert answer.status == "interrupted" and answer.content == "".join(TOKENS[:3])
    assert len(upstream.requests) == 1


async def test_f10_stall_mid_answer_is_an_error_while_keepalive_continues(
    main_app: LiveApp, upstream: ScriptedOpenAI, db
) -> None:
    upstream.enqueue(Script(tokens=TOKENS, stall_after=2))  # then silent; the tier's idle timeout is 2 s
    async with main_app.client() as client:
        reply = await post_chat(client, {"query": QUESTION})
    stream = reply.stream
    assert stream.text == "".join(TOKENS[:2]) and stream.terminal.data["code"] == "upstream_stalled"
    assert stream.terminal.data["retryable"] is True
    assert stream.comments.count("keepalive") >= 5  # every 0.2 s while the upstream was silent
    answer = await assert_turn_stored(db, reply, question=QUESTION)
    assert answer.status == "interrupted"


@pytest.fixture(scope="module")
def lone_tier_app(
    backend: Backend, fake: ScriptedOpenAI, api_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApp]:
    with live_app(
        template=api_index,
        workdir=tmp_path_factory.mktemp("lone"),
        backend=backend,
        tiers=[upstream_tier(fake, first=0.5)],
        circuit=CircuitSettings(failure_threshold=3, cooldown_seconds=30),
    ) as app:
        yield app


@pytest.mark.parametrize(
    "script", [Script(status=500), Script(tokens=["late"], first_token_delay=3)], ids=["500", "timeout"]
)
async def test_f11_all_tiers_fail_with_one_bounded_error(
    lone_tier_app: LiveApp, upstream: ScriptedOpenAI, script: Script
) -> None:
    upstream.enqueue(script)
    started = time.monotonic()
    async with lone_tier_app.client() as client, lone_tier_app.db() as db:
        reply = await post_chat(client, {"query": QUESTION})
        elapsed = time.monotonic() - started
        stream = reply.stream
        assert stream.tokens == [] and stream.terminal.name == "error"
        error = stream.terminal.data
        assert error["code"] == "all_tiers_failed" and error["retryable"] is True
        assert "500" not in error["message"] and "http" not in error["message"].lower()
        answer = await assert_turn_stored(db, reply, question=QUESTION)
    assert answer.status == "error" and answer.content == ""
    assert elapsed < 2.5  # bounded by the first-token timeout, not by the upstream
    assert len(upstream.requests) == 1
