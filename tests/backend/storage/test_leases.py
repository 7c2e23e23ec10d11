"""Streaming leases against real SQLite and PostgreSQL (F13): live answers renewed, lapsed ones reaped."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.errors import ErrorCode, LorechatError
from backend.storage import repository as repo
from backend.storage.leases import Leases
from backend.storage.models import Message, utcnow

pytestmark = pytest.mark.services

Sessions = async_sessionmaker[AsyncSession]


async def _start(sessions: Sessions, leases: Leases, conversation_id: str | None = None) -> repo.Turn:
    turn = await repo.start_turn(
        sessions, conversation_id=conversation_id, owner_id="alice", creator=None, question="Hello?",
        lease_owner=leases.owner, lease_until=leases.until(),
    )  # fmt: skip
    leases.hold(turn.assistant_message_id)
    return turn


async def _status(sessions: Sessions, turn: repo.Turn) -> str | None:
    return await repo.assistant_status(sessions, assistant_message_id=turn.assistant_message_id)


async def _lapse(sessions: Sessions, turn: repo.Turn) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            update(Message)
            .where(Message.id == turn.assistant_message_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


async def test_f13_a_live_lease_blocks_the_next_turn_and_a_lapsed_one_does_not(sessions: Sessions) -> None:
    dead, alive = Leases(sessions, seconds=30, reaper_seconds=600), Leases(sessions, seconds=30, reaper_seconds=600)
    turn = await _start(sessions, dead)
    with pytest.raises(LorechatError) as caught:
        await _start(sessions, alive, turn.conversation_id)
    assert caught.value.code is ErrorCode.conflict  # D4 still holds while the lease is live
    await _lapse(sessions, turn)  # its process died: nobody renewed it
    await _start(sessions, alive, turn.conversation_id)
    assert await _status(sessions, turn) == "interrupted"


async def test_f13_renewal_keeps_own_answers_and_the_reaper_takes_only_lapsed_ones(sessions: Sessions) -> None:
    mine, theirs = Leases(sessions, seconds=30, reaper_seconds=600), Leases(sessions, seconds=30, reaper_seconds=600)
    live, dead = await _start(sessions, mine), await _start(sessions, theirs)
    await _lapse(sessions, live)
    await _lapse(sessions, dead)
    assert await mine.renew() == 1  # only its own, still streaming answer
    assert await repo.reap_streaming(sessions, older_than_seconds=600) == 1
    assert (await _status(sessions, live), await _status(sessions, dead)) == ("streaming", "interrupted")
    # A finished answer is not renewed, even if still held by mistake.
    assert await repo.finish_turn(
        sessions, assistant_message_id=live.assistant_message_id, content="Hi.", status="done", cascade_tier=None,
        sources=[], usage=None, search_query="", error_code=None,
    )  # fmt: skip
    assert await mine.renew() == 0


async def test_f13_a_turn_held_past_the_reaper_bound_is_no_longer_vouched_for(sessions: Sessions) -> None:
    leases = Leases(sessions, seconds=30, reaper_seconds=0.05)
    await _start(sessions, leases)
    await asyncio.sleep(0.1)
    assert await leases.renew() == 0 and leases.held == 0


async def test_rows_without_a_lease_are_reaped_by_age_only(sessions: Sessions) -> None:
    legacy = await repo.start_turn(sessions, conversation_id=None, owner_id=None, creator=None, question="Old?")
    assert await repo.reap_streaming(sessions, older_than_seconds=600) == 0
    async with sessions() as session, session.begin():
        await session.execute(
            update(Message)
            .where(Message.id == legacy.assistant_message_id)
            .values(created_at=utcnow() - timedelta(hours=1))
        )
    assert await repo.reap_streaming(sessions, older_than_seconds=600) == 1


async def test_f13_a_process_never_reaps_the_answers_it_is_streaming(sessions: Sessions) -> None:
    """A database too busy to take the renewals lets a live turn's lease lapse: its own process keeps it (the
    turn is still streaming there), any other process may reap it."""
    mine = Leases(sessions, seconds=30, reaper_seconds=600)
    live = await _start(sessions, mine)
    await _lapse(sessions, live)
    assert await repo.reap_streaming(sessions, older_than_seconds=600, alive=[live.assistant_message_id]) == 0
    assert await _status(sessions, live) == "streaming"
    assert await repo.reap_streaming(sessions, older_than_seconds=600) == 1
    assert await _status(sessions, live) == "interrupted"
