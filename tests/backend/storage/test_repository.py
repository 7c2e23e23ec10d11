"""Conversation storage against real SQLite and PostgreSQL: turns, ownership, races, deletion, paging."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend.errors import ErrorCode, LorechatError
from backend.storage import repository as repo
from backend.storage.models import Conversation, Message
from backend.storage.turn_statements import FINISH_ANSWER, INSERT_CONVERSATION, INSERT_TURN, START_CONVERSATION
from tests.backend.storage.conftest import assert_no_leaks

pytestmark = pytest.mark.services

Sessions = async_sessionmaker[AsyncSession]


async def _turn(sessions: Sessions, **overrides: Any) -> repo.Turn:
    args: dict[str, Any] = {"conversation_id": None, "owner_id": "alice", "creator": "c1", "question": "Hello?"}
    args.update(overrides)
    return await repo.start_turn(sessions, **args)


async def _finish(sessions: Sessions, turn: repo.Turn, content: str = "Hi.", status: str = "done") -> bool:
    return await repo.finish_turn(
        sessions,
        assistant_message_id=turn.assistant_message_id,
        content=content,
        status=status,
        cascade_tier="local",
        sources=[{"doc": "d1", "title": "T"}],
        usage={"completion_tokens": 3},
        search_query="hello",
        error_code=None,
    )


async def test_turn_lifecycle(sessions: Sessions) -> None:
    long_question = "Why   is\nthe sky blue? " * 30
    first = await _turn(sessions, question=long_question)
    assert first.created and first.history == []
    assert len(first.conversation_id) >= 22 and len(first.assistant_message_id) >= 22

    detail = await repo.get_conversation(sessions, conversation_id=first.conversation_id, owner_id="alice")
    assert detail is not None and detail.creator == "c1" and detail.owner_id == "alice"
    assert detail.title.startswith("Why is the sky blue?") and len(detail.title) <= 120
    assert [(m.role, m.status, m.seq) for m in detail.messages] == [("user", "done", 0), ("assistant", "streaming", 1)]
    assert detail.created_at.tzinfo is not None and detail.messages[0].created_at.utcoffset() == timedelta(0)
    assert await repo.assistant_status(sessions, assistant_message_id=first.assistant_message_id) == "streaming"

    assert await _finish(sessions, first, "Rayleigh scattering.")
    second = await _turn(sessions, conversation_id=first.conversation_id, question="And at sunset?")
    assert not second.created and second.conversation_id == first.conversation_id
    assert second.history == [("user", long_question), ("assistant", "Rayleigh scattering.")]
    await _finish(sessions, second, "Longer path.")

    third = await _turn(sessions, conversation_id=first.conversation_id, question="Q3", history_limit=2)
    assert third.history == [("user", "And at sunset?"), ("assistant", "Longer path.")]
    await _finish(sessions, third, "partial", status="interrupted")
    fourth = await _turn(sessions, conversation_id=first.conversation_id, question="Q4", load_history=False)
    assert fourth.history == []
    await _finish(sessions, fourth)

    detail = await repo.get_conversation(sessions, conversation_id=first.conversation_id, owner_id="alice")
    assert detail is not None
    assert [m.seq for m in detail.messages] == list(range(8))
    answer = detail.messages[1]
    assert (answer.content, answer.status, answer.cascade_tier) == ("Rayleigh scattering.", "done", "local")
    assert answer.sources == [{"doc": "d1", "title": "T"}] and answer.usage == {"completion_tokens": 3}
    assert answer.search_query == "hello" and answer.finished_at is not None
    assert detail.messages[5].status == "interrupted"
    assert detail.updated_at >= detail.created_at
    # A turn's two rows go in as one multi-row INSERT, which applies no column defaults: every column is set.
    assert [(m.unsupported_claims, m.unanswered, m.citations) for m in detail.messages[:2]] == [(0, False, None)] * 2


async def test_first_turn_is_stored_whole_or_not_at_all(sessions: Sessions) -> None:
    """The new conversation and its two messages are one statement on PostgreSQL (one transaction on SQLite):
    a message that cannot be stored leaves no conversation behind."""
    taken = await _turn(sessions)
    clash = taken.user_message_id
    with pytest.MonkeyPatch.context() as patch:
        ids = iter([clash, "a" * 22, "c" * 22])  # the question, the answer, the conversation
        patch.setattr(repo, "new_id", lambda: next(ids))
        with pytest.raises(LorechatError) as caught:
            await _turn(sessions)
    assert caught.value.code is ErrorCode.conflict
    assert await repo.get_conversation(sessions, conversation_id="c" * 22, owner_id="alice") is None


async def test_finish_turn_is_idempotent(sessions: Sessions) -> None:
    turn = await _turn(sessions)
    assert await _finish(sessions, turn, "first", status="stopped") is True
    # A late second finish (e.g. a shielded write racing the stop endpoint) changes nothing.
    assert await _finish(sessions, turn, "second", status="done") is False
    detail = await repo.get_conversation(sessions, conversation_id=turn.conversation_id, owner_id="alice")
    assert detail is not None and (detail.messages[1].content, detail.messages[1].status) == ("first", "stopped")
    with pytest.raises(ValueError, match="terminal"):
        await _finish(sessions, turn, status="streaming")


async def _not_found(sessions: Sessions, **overrides: Any) -> str:
    with pytest.raises(LorechatError) as caught:
        await _turn(sessions, **overrides)
    assert caught.value.code is ErrorCode.not_found and caught.value.status == 404
    return caught.value.message


async def test_other_owner_gets_the_same_not_found_as_a_missing_id(sessions: Sessions) -> None:
    """S3: someone else's, deleted and never-existing ids are indistinguishable."""
    mine = await _turn(sessions, owner_id="alice")
    await _finish(sessions, mine)
    deleted = await _turn(sessions, owner_id="alice")
    await _finish(sessions, deleted)
    assert await repo.delete_conversation(sessions, conversation_id=deleted.conversation_id, owner_id="alice")

    messages = {
        await _not_found(sessions, conversation_id=mine.conversation_id, owner_id="mallory"),
        await _not_found(sessions, conversation_id=mine.conversation_id, owner_id=None),
        await _not_found(sessions, conversation_id=deleted.conversation_id, owner_id="alice"),
        await _not_found(sessions, conversation_id="x" * 22, owner_id="alice"),
        await _not_found(sessions, conversation_id="y" * 5000, owner_id="alice"),
    }
    assert len(messages) == 1
    for owner in ("mallory", None):
        assert await repo.get_conversation(sessions, conversation_id=mine.conversation_id, owner_id=owner) is None
        assert not await repo.delete_conversation(sessions, conversation_id=mine.conversation_id, owner_id=owner)
    assert (await repo.list_conversations(sessions, owner_id="mallory", limit=10, cursor=None)).items == []
    # Nothing was written by the refused attempts.
    detail = await repo.get_conversation(sessions, conversation_id=mine.conversation_id, owner_id="alice")
    assert detail is not None and len(detail.messages) == 2


async def test_anonymous_conversation_is_reachable_by_its_unguessable_id(sessions: Sessions) -> None:
    turn = await _turn(sessions, owner_id=None, creator=None)
    await _finish(sessions, turn)
    again = await _turn(sessions, conversation_id=turn.conversation_id, owner_id=None, creator=None)
    assert again.history[0] == ("user", "Hello?")
    ids = {(await _turn(sessions, owner_id=None)).conversation_id for _ in range(20)}
    assert len(ids) == 20 and all(len(i) >= 22 for i in ids)


async def test_other_creator_is_invalid_input(sessions: Sessions) -> None:
    turn = await _turn(sessions, creator="c1")
    await _finish(sessions, turn)
    for creator in ("c2", None):
        with pytest.raises(LorechatError) as caught:
            await _turn(sessions, conversation_id=turn.conversation_id, creator=creator)
        assert caught.value.code is ErrorCode.invalid_input


async def test_second_turn_while_streaming_is_a_conflict(sessions: Sessions) -> None:
    turn = await _turn(sessions)
    with pytest.raises(LorechatError) as caught:
        await _turn(sessions, conversation_id=turn.conversation_id)
    assert caught.value.code is ErrorCode.conflict and caught.value.status == 409
    await _finish(sessions, turn)
    await _turn(sessions, conversation_id=turn.conversation_id)


async def test_concurrent_turns_never_interleave(engine: AsyncEngine, sessions: Sessions) -> None:
    """D4: racing turns on one conversation → exactly one wins, the rest get 409, nothing half-written."""
    turn = await _turn(sessions)
    await _finish(sessions, turn)
    results = await asyncio.gather(
        *(_turn(sessions, conversation_id=turn.conversation_id, question=f"q{i}") for i in range(8)),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, repo.Turn)]
    losers = [r for r in results if isinstance(r, LorechatError)]
    assert len(winners) == 1 and len(losers) == 7, results
    assert all(e.code is ErrorCode.conflict for e in losers)
    detail = await repo.get_conversation(sessions, conversation_id=turn.conversation_id, owner_id="alice")
    assert detail is not None and [m.seq for m in detail.messages] == [0, 1, 2, 3]
    assert [m.status for m in detail.messages].count("streaming") == 1
    await assert_no_leaks(engine)


async def test_soft_delete(engine: AsyncEngine, sessions: Sessions) -> None:
    turn = await _turn(sessions)
    assert await repo.delete_conversation(sessions, conversation_id=turn.conversation_id, owner_id="alice")
    assert not await repo.delete_conversation(sessions, conversation_id=turn.conversation_id, owner_id="alice")
    assert await repo.get_conversation(sessions, conversation_id=turn.conversation_id, owner_id="alice") is None
    assert (await repo.list_conversations(sessions, owner_id="alice", limit=10, cursor=None)).items == []
    # Soft: the rows stay (audit, and the in-flight answer can still be finished).
    async with engine.connect() as connection:
        rows = await connection.scalar(
            text("SELECT count(*) FROM messages WHERE conversation_id = :id"), {"id": turn.conversation_id}
        )
    assert rows == 2
    assert await _finish(sessions, turn)


async def test_keyset_pagination(sessions: Sessions) -> None:
    mine = [(await _turn(sessions, question=f"q{i}")).conversation_id for i in range(7)]
    for _ in range(2):
        await _turn(sessions, owner_id="bob")
    # Equal timestamps on a few rows: the id breaks the tie, so no row is skipped or repeated.
    tie = datetime(2030, 1, 1, tzinfo=UTC)
    async with sessions() as session, session.begin():
        await session.execute(update(Conversation).where(Conversation.id.in_(mine[2:5])).values(updated_at=tie))

    seen: list[str] = []
    cursor: str | None = None
    sizes = []
    while True:
        page = await repo.list_conversations(sessions, owner_id="alice", limit=3, cursor=cursor)
        sizes.append(len(page.items))
        seen += [item.id for item in page.items]
        stamps = [(item.updated_at, item.id) for item in page.items]
        assert stamps == sorted(stamps, reverse=True)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sizes == [3, 3, 1]
    assert sorted(seen) == sorted(mine) and len(set(seen)) == 7
    assert set(seen[:3]) == set(mine[2:5])
    with pytest.raises(LorechatError) as caught:
        await repo.list_conversations(sessions, owner_id="alice", limit=3, cursor="not-a-cursor")
    assert caught.value.code is ErrorCode.invalid_input


async def test_reaper_interrupts_only_stale_streaming_answers(sessions: Sessions) -> None:
    stale = await _turn(sessions)
    fresh = await _turn(sessions)
    finished = await _turn(sessions)
    await _finish(sessions, finished)
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    async with sessions() as session, session.begin():
        await session.execute(
            update(Message)
            .where(Message.conversation_id.in_([stale.conversation_id, finished.conversation_id]))
            .values(created_at=long_ago)
        )
    assert await repo.reap_streaming(sessions, older_than_seconds=600) == 1
    assert await repo.assistant_status(sessions, assistant_message_id=stale.assistant_message_id) == "interrupted"
    assert await repo.assistant_status(sessions, assistant_message_id=fresh.assistant_message_id) == "streaming"
    assert await repo.assistant_status(sessions, assistant_message_id=finished.assistant_message_id) == "done"
    # The reaped turn stays terminal, and the conversation accepts a new turn.
    assert not await _finish(sessions, stale, "too late")
    await _turn(sessions, conversation_id=stale.conversation_id)
    assert await repo.reap_streaming(sessions, older_than_seconds=600) == 0


async def test_hostile_and_international_text_round_trips(sessions: Sessions) -> None:
    """I4: NUL and lone surrogates are cleaned, never a DB error; I5: everything else is kept exactly."""
    intact = "emoji 👩🏽‍🚀🎉, RTL שלום مرحبا, CJK 你好世界, combining e\u0301 n\u0303, ZWJ\u200d, tab\tnewline\n"
    question = "a\x00b\ud800c " + intact + "\udfff"
    turn = await _turn(sessions, question=question)
    await repo.finish_turn(
        sessions,
        assistant_message_id=turn.assistant_message_id,
        content="x\x00" + intact + "\ud83d\ude00",  # a pair split in two code points is rejoined
        status="done",
        cascade_tier=None,
        sources=[{"title\x00": "t\x00\ud800" + intact, "nested": [{"k": "\x00v"}], "score": 0.5}],
        usage=None,
        search_query="q\x00" + intact,
        error_code=None,
    )
    detail = await repo.get_conversation(sessions, conversation_id=turn.conversation_id, owner_id="alice")
    assert detail is not None
    user, answer = detail.messages
    assert user.content == "abc " + intact
    assert answer.content == "x" + intact + "😀"
    assert answer.sources == [{"title": "t" + intact, "nested": [{"k": "v"}], "score": 0.5}]
    assert answer.search_query == "q" + intact
    assert repo.make_title(user.content) == detail.title


def test_a_turns_statements_are_compiled_once() -> None:
    """SQLAlchemy compiles a statement once only when it has a cache key (a multi-row VALUES has none): a turn's
    writes must not pay the compiler every time."""
    for statement in (START_CONVERSATION, INSERT_TURN, INSERT_CONVERSATION, FINISH_ANSWER):
        assert statement._generate_cache_key() is not None
