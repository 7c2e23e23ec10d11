"""What the repository hands back: plain frozen records, detached from any session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

# (role, content) pairs, oldest first.
History = list[tuple[str, str]]


class MessageStatus(StrEnum):
    """Where a stored message stands. frontend/src/events.ts declares the same values (checked by a test)."""

    streaming = "streaming"  # an answer being generated now (at most one per conversation: D4)
    done = "done"  # complete (questions are stored done)
    stopped = "stopped"  # the visitor stopped it; what was said is kept
    interrupted = "interrupted"  # cut off: the visitor left, the model failed mid-answer, or its process died
    error = "error"  # nothing could be answered


TERMINAL_STATUSES = frozenset(MessageStatus) - {MessageStatus.streaming}
# The one rule for which past messages a follow-up sees (cache, SQL and prompt alike): what the visitor read
# in full or chose to stop, never an answer that failed or was cut off.
HISTORY_STATUSES = frozenset({MessageStatus.done, MessageStatus.stopped})


@dataclass(frozen=True, slots=True)
class Turn:
    conversation_id: str
    user_message_id: str
    assistant_message_id: str
    # Earlier messages in HISTORY_STATUSES, oldest first (empty when load_history=False).
    history: History
    created: bool


@dataclass(frozen=True, slots=True)
class MessageView:
    id: str
    seq: int
    role: str
    content: str
    status: str
    cascade_tier: str | None
    sources: list[dict[str, Any]]
    usage: dict[str, Any] | None
    search_query: str
    error_code: str | None
    created_at: datetime
    finished_at: datetime | None
    # The claim check of an answer (issue 12): per sentence span, citations, quote, supported; None if unchecked.
    citations: list[dict[str, Any]] | None = None
    unsupported_claims: int = 0
    unanswered: bool = False


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    id: str
    title: str
    creator: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ConversationDetail:
    id: str
    title: str
    creator: str | None
    owner_id: str | None
    created_at: datetime
    updated_at: datetime
    messages: list[MessageView]


@dataclass(frozen=True, slots=True)
class Page:
    items: list[ConversationSummary]
    # Pass back as `cursor` for the next page; None on the last page.
    next_cursor: str | None
