"""What the repository hands back: plain frozen records, detached from any session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

# (role, content) pairs, oldest first.
History = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Turn:
    conversation_id: str
    user_message_id: str
    assistant_message_id: str
    # Earlier "done" messages, oldest first (empty when load_history=False).
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
