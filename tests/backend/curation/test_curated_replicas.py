"""Two API replicas sharing PostgreSQL: a curated answer written anywhere is served by both within a second, and one
retired is served by neither from the moment its retirement committed (CA3)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.curation import answers_store
from tests.backend.api.harness import Backend, LiveApp, extractive_tier, live_app
from tests.backend.api.streams import post_chat

pytestmark = pytest.mark.services

CREATOR = "hazel-marsh"
QUESTION = {"query": "What percentage of salt goes into Hazel's bread?", "creator": CREATOR}


@pytest.fixture(scope="module")
def replicas(
    api_index: Path, api_pg_url: str, api_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveApp, LiveApp]]:
    backend = Backend("production", api_pg_url, api_redis_url)
    options = {"backend": backend, "tiers": [extractive_tier()]}  # the embedded default's tiers
    with (
        live_app(template=api_index, workdir=tmp_path_factory.mktemp("curated-a"), **options) as a,
        live_app(template=api_index, workdir=tmp_path_factory.mktemp("curated-b"), **options) as b,
    ):
        yield a, b


async def _tier(app: LiveApp) -> str:
    async with app.client() as client:
        return str((await post_chat(client, QUESTION)).stream.done["cascade_tier"])


async def test_ca3_a_retired_answer_stops_at_once_on_every_replica(replicas: tuple[LiveApp, LiveApp]) -> None:
    a, b = replicas
    async with a.db() as sessions:
        written = await answers_store.add_answer(
            sessions, creator=CREATOR, questions=["How much salt does Hazel put in her dough?"], answer="Two percent."
        )
    try:
        await asyncio.sleep(1.2)  # curated.refresh_seconds: each replica notices the version moved
        assert (await _tier(a), await _tier(b)) == ("curated", "curated")
        async with a.db() as sessions:
            assert await answers_store.retire_answer(sessions, answer_id=written.id)
        # No wait at all: both still hold the answer in memory, and neither serves it.
        assert (await _tier(b), await _tier(a)) == ("extractive", "extractive")
    finally:
        async with a.db() as sessions:
            await answers_store.retire_answer(sessions, answer_id=written.id)
