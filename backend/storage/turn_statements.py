"""The statements every chat turn runs (start_turn, finish_turn in repository.py), built once, and how they run.

The ORM's unit of work, and building and compiling a statement per call, cost more than the round trips; on
PostgreSQL a single-statement write also skips BEGIN and COMMIT (`short_write`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, cast

from sqlalchemy import BindParameter, Table, bindparam, insert, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from backend.storage.models import Conversation, Message
from backend.storage.records import MessageStatus

_CONVERSATIONS = cast(Table, Conversation.__table__)
_MESSAGES = cast(Table, Message.__table__)


def _param(table: Table, key: str, row: str) -> BindParameter[Any]:
    """Row `row`'s value for column `key`, typed as the column (JSON and dates need its conversion)."""
    return bindparam(f"{row}_{key}", type_=table.c[key].type)


INSERT_CONVERSATION = insert(_CONVERSATIONS)
# The SET clause of an UPDATE without values() is the parameters' keys.
FINISH_ANSWER = update(_MESSAGES).where(
    _MESSAGES.c.id == bindparam("answer_id"), _MESSAGES.c.status == MessageStatus.streaming
)
# A turn's two messages (question, placeholder answer), one INSERT of two rows; the keys of `turn_params`, prefixed
# "q_" and "a_". The rows are a SELECT of parameters, not a multi-row VALUES: SQLAlchemy caches no multi-row
# VALUES statement and compiled it anew every turn. Every column with a default is set here.
_MESSAGE_KEYS = (
    "id", "conversation_id", "seq", "role", "content", "status", "sources", "search_query", "created_at",
    "finished_at", "lease_owner", "lease_expires_at", "unsupported_claims", "unanswered",
)  # fmt: skip
INSERT_TURN = insert(_MESSAGES).from_select(
    _MESSAGE_KEYS,
    union_all(*(select(*(_param(_MESSAGES, key, row).label(key) for key in _MESSAGE_KEYS)) for row in ("q", "a"))),
)
# PostgreSQL: a new conversation and its first turn in one statement (the conversation inserted in a WITH) that
# runs as its own transaction: one round trip instead of BEGIN, two INSERTs and COMMIT.
_CONVERSATION_KEYS = ("id", "owner_id", "creator", "title", "created_at", "updated_at")
START_CONVERSATION = INSERT_TURN.add_cte(
    insert(_CONVERSATIONS)
    .values({key: _param(_CONVERSATIONS, key, "c") for key in _CONVERSATION_KEYS})
    .cte("new_conversation")
)


@asynccontextmanager
async def short_write(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncConnection]:
    """A Core connection, without the ORM session, for one of a turn's writes. On PostgreSQL it is in autocommit,
    so what runs on it must be a single statement (its own transaction; BEGIN and COMMIT were two more round
    trips); on SQLite it is a transaction (its BEGIN is implicit and costs nothing, and switching a connection to
    autocommit and back does), which may hold several."""
    engine = cast(AsyncEngine, sessions.kw["bind"])
    if engine.dialect.name == "postgresql":
        async with engine.connect() as connection:
            yield await connection.execution_options(isolation_level="AUTOCOMMIT")
    else:
        async with engine.begin() as connection:
            yield connection


def turn_params(
    conversation_id: str,
    seq: int,
    *,
    question: str,
    ids: tuple[str, str],
    now: datetime,
    lease: tuple[str | None, datetime | None],
) -> dict[str, Any]:
    """`INSERT_TURN`'s parameters: the question, done, and the answer's placeholder, streaming under `lease`."""
    question_row = dict(
        id=ids[0], conversation_id=conversation_id, seq=seq, role="user", content=question, status=MessageStatus.done,
        sources=[], search_query="", created_at=now, finished_at=now, lease_owner=None, lease_expires_at=None,
        unsupported_claims=0, unanswered=False,
    )  # fmt: skip
    answer_row = dict(
        question_row, id=ids[1], seq=seq + 1, role="assistant", content="", status=MessageStatus.streaming,
        finished_at=None, lease_owner=lease[0], lease_expires_at=lease[1],
    )  # fmt: skip
    return prefixed("q", question_row) | prefixed("a", answer_row)


def prefixed(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    """`values` as the parameters of one row of a multi-row statement."""
    return {f"{prefix}_{key}": value for key, value in values.items()}
