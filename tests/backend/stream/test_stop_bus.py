"""The stop bus's marks on real Redis: a replica's streaming conversations stay marked while their turns run
(renewed together in one call), and a turn that ends takes its mark with it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

from backend.storage.cache import redis_client
from backend.stream.running import RunningTurns, TurnControl
from backend.stream.stop_bus import MARK_PREFIX, StopBus
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.services


async def test_marks_outlive_their_ttl_while_the_turns_run_and_go_when_they_end() -> None:
    client = redis_client(REDIS_URL, timeout_seconds=0.5)
    running = RunningTurns()
    bus = StopBus(running, client=client, url=REDIS_URL, timeout_seconds=0.5, mark_ttl_seconds=2)
    listener = asyncio.get_running_loop().create_task(bus.run())
    turns = {f"c{uuid.uuid4().hex}": TurnControl() for _ in range(50)}
    try:
        for conversation_id, control in turns.items():
            running.register(conversation_id, control)
        await asyncio.sleep(3.0)  # past the marks' 2 s: only a renewal keeps them
        keys = [MARK_PREFIX + conversation_id for conversation_id in turns]
        assert await client.exists(*keys) == len(keys)
        assert all(0 < ttl <= 2_000 for ttl in [await client.pttl(key) for key in keys])
        ended, control = next(iter(turns.items()))
        running.unregister(ended, control)
        await asyncio.sleep(0.2)
        assert not await client.exists(MARK_PREFIX + ended)
        assert await bus.stop(ended) is False  # nobody streams it any more
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await client.delete(*(MARK_PREFIX + conversation_id for conversation_id in turns))
        await client.aclose()
