"""Rate limits at the HTTP edge (R1, R3) and who they are keyed on behind proxies (S1)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.settings import LimitSettings
from tests.backend.api.fixtures import LIMIT_CREATOR
from tests.backend.api.harness import EXTRACTIVE, Backend, LiveApp, extractive_tier, live_app, new_peer
from tests.backend.api.streams import Reply, assert_error, assert_turn_stored, post_chat

QUESTION = "Which flour ferments faster?"
PER_IP = 10


@pytest.fixture(scope="module")
def limited_app(backend: Backend, api_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    limits = LimitSettings(
        user_per_hour=0,
        ip_per_hour=PER_IP,
        creator_per_hour=3,  # only LIMIT_CREATOR is asked here: its key belongs to this run alone
        concurrent_streams_per_ip=100,
        trusted_proxies=["127.0.0.1"],
    )
    with live_app(
        template=api_index,
        workdir=tmp_path_factory.mktemp("limited"),
        backend=backend,
        tiers=[extractive_tier()],
        limits=limits,
        redis_timeout=2.0,  # 50 requests at once on 2 cores: a fail-open fallback would blur the count
    ) as app:
        yield app


def assert_limited(reply: Reply, message: str, code: str) -> None:
    """R3: 429 with Retry-After and {"error": ..., "retry_after": N} (plus the common error fields)."""
    body = assert_error(reply, 429, code)
    assert body["error"] == message and body["retryable"] is True
    assert isinstance(body["retry_after"], int) and 1 <= body["retry_after"] <= 3600
    assert reply.headers["retry-after"] == str(body["retry_after"])


def assert_served(reply: Reply) -> None:
    assert reply.status == 200 and "retry-after" not in reply.headers
    assert reply.stream.done["cascade_tier"] == EXTRACTIVE


async def test_r1_fifty_at_once_against_ten(limited_app: LiveApp) -> None:
    async with limited_app.client() as client, limited_app.db() as db:
        replies = await asyncio.gather(*(post_chat(client, {"query": QUESTION}) for _ in range(50)))
        served = [reply for reply in replies if reply.status == 200]
        assert len(served) == PER_IP and sorted({r.status for r in replies}) == [200, 429]
        for reply in served:
            assert_served(reply)
            await assert_turn_stored(db, reply, question=QUESTION)
    for reply in replies:
        if reply.status == 429:
            assert_limited(reply, "Rate limit exceeded", "rate_limited")
            assert "x-conversation-id" not in reply.headers  # refused before any turn was stored


async def test_r3_creator_limit(limited_app: LiveApp) -> None:
    async with limited_app.client() as client:
        for _ in range(3):
            assert_served(await post_chat(client, {"query": QUESTION, "creator": LIMIT_CREATOR}))
        refused = await post_chat(client, {"query": QUESTION, "creator": LIMIT_CREATOR})
    assert_limited(refused, "Creator rate limit exceeded", "creator_rate_limited")


async def test_s1_forwarded_headers_from_an_untrusted_peer_are_ignored(limited_app: LiveApp) -> None:
    async with limited_app.client() as client:  # its own address, not a trusted proxy
        for _ in range(PER_IP):
            spoofed = {"X-Forwarded-For": new_peer(), "X-Real-IP": new_peer()}
            assert_served(await post_chat(client, {"query": QUESTION}, headers=spoofed))
        refused = await post_chat(client, {"query": QUESTION}, headers={"X-Forwarded-For": new_peer()})
    assert_limited(refused, "Rate limit exceeded", "rate_limited")


async def test_s1_forwarded_for_from_a_trusted_proxy_is_honoured(limited_app: LiveApp) -> None:
    visitor, other = new_peer(), new_peer()
    async with limited_app.client(peer="127.0.0.1") as proxy:
        for _ in range(PER_IP):
            assert_served(await post_chat(proxy, {"query": QUESTION}, headers={"X-Forwarded-For": visitor}))
        # The visitor is out of budget, whatever it claims further left in the chain…
        chained = {"X-Forwarded-For": f"{new_peer()}, {visitor}"}
        refused = await post_chat(proxy, {"query": QUESTION}, headers=chained)
        assert_limited(refused, "Rate limit exceeded", "rate_limited")
        # …while another visitor behind the same proxy is not.
        assert_served(await post_chat(proxy, {"query": QUESTION}, headers={"X-Forwarded-For": other}))
