"""Conversation storage as plain async functions; each opens one short session and never holds it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from asyncpg import PostgresError
from sqlalchemy import ColumnElement, and_, delete, func, or_, select, true, update
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.errors import ErrorCode, LorechatError
from backend.storage.cleaning import clean_json, clean_text
from backend.storage.cursors import decode_cursor, encode_cursor
from backend.storage.models import (
    TITLE_CHARS,
    Conversation,
    Message,
    is_valid_id,
    new_id,
    utcnow,
)
from backend.storage.records import (
    HISTORY_STATUSES,
    TERMINAL_STATUSES,
    ConversationDetail,
    ConversationSummary,
    History,
    MessageStatus,
    MessageView,
    Page,
    Turn,
)
from backend.storage.turn_statements import (
    FINISH_ANSWER,
    INSERT_CONVERSATION,
    INSERT_TURN,
    START_CONVERSATION,
    prefixed,
    short_write,
    turn_params,
)

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]

# One message for "absent", "deleted" and "someone else's": no existence oracle (S3).
_NOT_FOUND = "Conversation not found"
MAX_PAGE = 100


@asynccontextmanager
async def db_errors() -> AsyncIterator[None]:
    """Connectivity failures become a retryable 503; programming errors stay loud."""
    try:
        yield
    except Exception as exc:
        unavailable = unavailable_error(exc)
        if unavailable is None:
            raise
        raise unavailable from exc


# What a database failure escaping any route can be (the app maps these through `unavailable_error`).
DATABASE_ERRORS: tuple[type[Exception], ...] = (DBAPIError, PoolTimeoutError, PostgresError)


def unavailable_error(exc: BaseException) -> LorechatError | None:
    """The one mapping of "the database cannot serve now" to 503 with Retry-After (F4), for `db_errors` and for
    the app's last-resort handler (so a route that forgot `db_errors` still answers 503, never 500); None when
    `exc` is not such a failure. Exception groups count when every failure in them is one."""
    if isinstance(exc, BaseExceptionGroup):
        mapped = [unavailable_error(inner) for inner in exc.exceptions]
        return mapped[0] if mapped and all(m is not None for m in mapped) else None
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeoutError, OSError, TimeoutError)):
        reason = type(exc.orig if isinstance(exc, DBAPIError) else exc).__name__
    elif isinstance(exc, DBAPIError) and (exc.connection_invalidated or _unavailable_sqlstate(exc)):
        reason = type(exc.orig).__name__
    elif _unavailable_sqlstate(exc):  # a driver's own error that escaped SQLAlchemy's wrapping (asyncpg on connect)
        reason = type(exc).__name__
    else:
        return None
    log.warning("database unavailable: %s", reason)
    return LorechatError(ErrorCode.database_unavailable, "The database is unavailable", retry_after=5)


def _unavailable_sqlstate(exc: BaseException) -> bool:
    """PostgreSQL states meaning "not now" rather than "wrong": connection loss (08), shutdown and
    statement_timeout (57), overload (53), and a database that is gone or refuses us (3D000: it was dropped;
    28: credentials no longer accepted; 42P01: its tables are missing, e.g. recreated empty)."""
    orig = getattr(exc, "orig", None) or exc
    state = str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")
    return state.startswith(("08", "53", "57", "28")) or state in ("3D000", "42P01")


def _visible(conversation_id: str, owner_id: str | None) -> ColumnElement[bool]:
    """Live conversations the caller may see: anonymous ones by id, owned ones by their owner only."""
    owner: ColumnElement[bool] = Conversation.owner_id.is_(None)
    if owner_id is not None:
        owner = or_(owner, Conversation.owner_id == owner_id)
    return and_(Conversation.id == conversation_id, Conversation.deleted_at.is_(None), owner)


def _valid_id(conversation_id: str) -> bool:
    # The one gate every id from outside passes (path, body, cursor) before any query: I4, 404 not 500.
    return is_valid_id(conversation_id)


def make_title(question: str) -> str:
    title = " ".join(question.split())
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1].rstrip() + "…"


async def _history(session: AsyncSession, conversation_id: str, limit: int | None) -> History:
    query = (
        select(Message.role, Message.content)
        .where(Message.conversation_id == conversation_id, Message.status.in_(HISTORY_STATUSES), Message.content != "")
        .order_by(Message.seq.desc())
    )
    if limit is not None:
        query = query.limit(limit)
    rows = (await session.execute(query)).all()
    return [(row.role, row.content) for row in reversed(rows)]


async def start_turn(
    sessions: Sessions,
    *,
    conversation_id: str | None,
    owner_id: str | None,
    creator: str | None,
    question: str,
    history_limit: int | None = None,
    load_history: bool = True,
    lease_owner: str | None = None,
    lease_until: datetime | None = None,
) -> Turn:
    """Store the question and a "streaming" answer placeholder in one transaction, leased to `lease_owner`.

    Raises not_found (absent, deleted or another owner's), invalid_input (other creator), conflict (a turn
    is already streaming in this conversation: D4), database_unavailable. An answer whose lease lapsed (its
    process died) does not block: it is finished as interrupted here, in the same transaction (F13).
    """
    question = clean_text(question)
    now = utcnow()
    created = conversation_id is None
    user_id, assistant_id = new_id(), new_id()
    turn = partial(
        turn_params, question=question, ids=(user_id, assistant_id), now=now, lease=(lease_owner, lease_until)
    )
    try:
        if conversation_id is None:
            conversation_id = new_id()
            conversation = dict(
                id=conversation_id, owner_id=owner_id, creator=creator, title=make_title(question),
                created_at=now, updated_at=now,
            )  # fmt: skip
            async with db_errors(), short_write(sessions) as connection:
                if connection.dialect.name == "postgresql":
                    await connection.execute(START_CONVERSATION, prefixed("c", conversation) | turn(conversation_id, 0))
                else:
                    await connection.execute(INSERT_CONVERSATION, conversation)
                    await connection.execute(INSERT_TURN, turn(conversation_id, 0))
            return Turn(conversation_id, user_id, assistant_id, [], created)
        if not _valid_id(conversation_id):
            raise LorechatError(ErrorCode.not_found, _NOT_FOUND)
        async with db_errors(), sessions() as session, session.begin():
            # Writing first takes the row lock (PostgreSQL) or the write lock (SQLite) before anything is read,
            # so two turns on one conversation queue here instead of racing past the checks.
            touched = await session.execute(
                update(Conversation)
                .where(_visible(conversation_id, owner_id))
                .values(updated_at=now)
                .returning(Conversation.creator)
                .execution_options(synchronize_session=False)
            )
            row = touched.first()
            if row is None:
                raise LorechatError(ErrorCode.not_found, _NOT_FOUND)
            if row.creator != creator:
                raise LorechatError(ErrorCode.invalid_input, "This conversation belongs to another creator")
            await _no_live_turn(session, conversation_id, now)
            last = await session.scalar(select(func.max(Message.seq)).where(Message.conversation_id == conversation_id))
            seq = 0 if last is None else last + 1
            history = await _history(session, conversation_id, history_limit) if load_history else []
            await session.execute(INSERT_TURN, turn(conversation_id, seq))
    except IntegrityError as exc:
        # The partial unique index or the (conversation, seq) key caught a turn that raced past the checks.
        raise LorechatError(
            ErrorCode.conflict, "An answer is still streaming in this conversation", retry_after=1
        ) from exc
    return Turn(conversation_id, user_id, assistant_id, history, created)


async def withdraw_turn(sessions: Sessions, turn: Turn) -> None:
    """Undo `start_turn` for a turn that never began (its search failed): its two messages go, and the
    conversation too when this turn created it, so the visitor's retry is stored once, not twice."""
    async with db_errors(), sessions() as session, session.begin():
        await session.execute(delete(Message).where(Message.id.in_((turn.user_message_id, turn.assistant_message_id))))
        if turn.created:
            await session.execute(delete(Conversation).where(Conversation.id == turn.conversation_id))


async def _no_live_turn(session: AsyncSession, conversation_id: str, now: datetime) -> None:
    """409 while another answer streams in this conversation, unless its lease lapsed: then it is reaped."""
    streaming = (
        await session.execute(
            select(Message.id, Message.lease_expires_at)
            .where(Message.conversation_id == conversation_id, Message.status == MessageStatus.streaming)
            .limit(1)
        )
    ).first()
    if streaming is None:
        return
    if streaming.lease_expires_at is None or streaming.lease_expires_at >= now:
        raise LorechatError(ErrorCode.conflict, "An answer is still streaming in this conversation", retry_after=1)
    log.warning("message %s: its process stopped renewing the lease; marked interrupted", streaming.id)
    await session.execute(
        update(Message)
        .where(Message.id == streaming.id, Message.status == MessageStatus.streaming)
        .values(**_interrupted(now))
        .execution_options(synchronize_session=False)
    )


def _interrupted(now: datetime) -> dict[str, Any]:
    return {"status": MessageStatus.interrupted, "error_code": ErrorCode.upstream_interrupted.value, "finished_at": now}


async def finish_turn(
    sessions: Sessions,
    *,
    assistant_message_id: str,
    content: str,
    status: MessageStatus,
    cascade_tier: str | None,
    sources: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    search_query: str,
    error_code: str | None,
    citations: list[dict[str, Any]] | None = None,
    unsupported_claims: int = 0,
    unanswered: bool = False,
    ttft_ms: int | None = None,
) -> bool:
    """Move a streaming answer to its terminal state; False when it already left "streaming" (idempotent)."""
    if status not in TERMINAL_STATUSES:
        raise ValueError(f"finish_turn needs a terminal status, got {status!r}")
    async with db_errors(), short_write(sessions) as connection:
        result = await connection.execute(
            FINISH_ANSWER,
            dict(
                answer_id=assistant_message_id, content=clean_text(content), status=status,
                cascade_tier=cascade_tier, sources=clean_json(sources), usage=clean_json(usage),
                search_query=clean_text(search_query), error_code=error_code, citations=clean_json(citations),
                unsupported_claims=unsupported_claims, unanswered=unanswered, ttft_ms=ttft_ms, finished_at=utcnow(),
            ),
        )  # fmt: skip
    return bool(result.rowcount)


def _message_view(message: Message) -> MessageView:
    return MessageView(
        id=message.id, seq=message.seq, role=message.role, content=message.content, status=message.status,
        cascade_tier=message.cascade_tier, sources=message.sources or [], usage=message.usage,
        search_query=message.search_query, error_code=message.error_code, created_at=message.created_at,
        finished_at=message.finished_at, citations=message.citations, unsupported_claims=message.unsupported_claims,
        unanswered=message.unanswered,
    )  # fmt: skip


async def get_conversation(
    sessions: Sessions, *, conversation_id: str, owner_id: str | None
) -> ConversationDetail | None:
    """The conversation with its messages in order; None when not visible to this caller."""
    if not _valid_id(conversation_id):
        return None
    async with db_errors(), sessions() as session:
        conversation = await session.scalar(select(Conversation).where(_visible(conversation_id, owner_id)))
        if conversation is None:
            return None
        messages = await session.scalars(
            select(Message).where(Message.conversation_id == conversation_id).order_by(Message.seq)
        )
        return ConversationDetail(
            id=conversation.id, title=conversation.title, creator=conversation.creator,
            owner_id=conversation.owner_id, created_at=conversation.created_at,
            updated_at=conversation.updated_at, messages=[_message_view(m) for m in messages],
        )  # fmt: skip


async def conversation_visible(sessions: Sessions, *, conversation_id: str, owner_id: str | None) -> bool:
    """Whether this caller may read the conversation (the same rule as reading it), without loading it."""
    if not _valid_id(conversation_id):
        return False
    async with db_errors(), sessions() as session:
        return await session.scalar(select(Conversation.id).where(_visible(conversation_id, owner_id))) is not None


async def list_conversations(sessions: Sessions, *, owner_id: str, limit: int, cursor: str | None) -> Page:
    """The owner's live conversations, most recently active first (keyset pagination on updated_at, id)."""
    limit = max(1, min(limit, MAX_PAGE))
    query = select(Conversation).where(Conversation.owner_id == owner_id, Conversation.deleted_at.is_(None))
    if cursor:
        after_time, after_id = decode_cursor(cursor)
        query = query.where(
            or_(
                Conversation.updated_at < after_time,
                and_(Conversation.updated_at == after_time, Conversation.id < after_id),
            )
        )
    query = query.order_by(Conversation.updated_at.desc(), Conversation.id.desc()).limit(limit + 1)
    async with db_errors(), sessions() as session:
        rows = list(await session.scalars(query))
    items = [ConversationSummary(c.id, c.title, c.creator, c.created_at, c.updated_at) for c in rows[:limit]]
    next_cursor = encode_cursor(items[-1].updated_at, items[-1].id) if len(rows) > limit else None
    return Page(items, next_cursor)


async def delete_conversation(sessions: Sessions, *, conversation_id: str, owner_id: str | None) -> bool:
    """Soft delete; False when the conversation is not visible to this caller (same as never existing)."""
    if not _valid_id(conversation_id):
        return False
    async with db_errors(), sessions() as session, session.begin():
        result = await session.execute(
            update(Conversation)
            .where(_visible(conversation_id, owner_id))
            .values(deleted_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def reap_streaming(sessions: Sessions, *, older_than_seconds: float, alive: Sequence[str] = ()) -> int:
    """Mark answers stuck in "streaming" (a crash mid-turn) as interrupted (INV-1); returns how many.

    Stuck means: its lease lapsed (the process that streamed it stopped renewing it), or it has no lease
    (written before migration 0002) and started more than `older_than_seconds` ago. `alive` are answers the
    calling process is streaming right now: never its own to reap, even when a database too busy to take the
    renewals let their leases lapse (another process may still reap them: to it they are not vouched for).
    """
    now = utcnow()
    async with db_errors(), sessions() as session, session.begin():
        result = await session.execute(
            update(Message)
            .where(
                Message.status == MessageStatus.streaming,
                Message.id.not_in(alive) if alive else true(),
                or_(
                    Message.lease_expires_at < now,
                    and_(
                        Message.lease_expires_at.is_(None),
                        Message.created_at < now - timedelta(seconds=older_than_seconds),
                    ),
                ),
            )
            .values(**_interrupted(now))
            .execution_options(synchronize_session=False)
        )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def assistant_status(sessions: Sessions, *, assistant_message_id: str) -> str | None:
    """The stored status of one message (None when absent); for tests and the stop endpoint."""
    async with db_errors(), sessions() as session:
        return await session.scalar(select(Message.status).where(Message.id == assistant_message_id))
