"""The history a follow-up sees: from the cache (Redis or in process), else from SQL; one rule for both.

Past messages count when their status is in HISTORY_STATUSES (complete or stopped answers, and questions),
the last `cache.history_messages` of them. The cache key holds the owner, so a cached history is only served
to whoever could read it from SQL.
"""

from __future__ import annotations

from backend.errors import ErrorCode, LorechatError
from backend.storage import repository
from backend.storage.cache import HistoryCache
from backend.storage.records import HISTORY_STATUSES, History, MessageView
from backend.storage.repository import Sessions


def history_of(messages: list[MessageView], limit: int) -> History:
    """The (role, content) pairs a follow-up sees, oldest first: the one rule, wherever history comes from."""
    history = [(m.role, m.content) for m in messages if m.status in HISTORY_STATUSES and m.content]
    return history[-limit:] if limit else []


class ConversationHistory:
    def __init__(self, *, sessions: Sessions, cache: HistoryCache, limit: int) -> None:
        self._sessions = sessions
        self._cache = cache
        self._limit = limit

    async def load(self, conversation_id: str, *, owner_id: str | None) -> History:
        """The conversation's history; not_found when the caller cannot see it (S3: same 404 as missing)."""
        key = cache_key(conversation_id, owner_id)
        cached = await self._cache.get(key)
        if cached is not None:
            return list(cached)
        detail = await repository.get_conversation(self._sessions, conversation_id=conversation_id, owner_id=owner_id)
        if detail is None:
            raise LorechatError(ErrorCode.not_found, "Conversation not found")
        history = history_of(detail.messages, self._limit)
        await self._cache.put(key, history)
        return history

    async def remember(
        self, conversation_id: str, *, owner_id: str | None, before: History, question: str, answer: str
    ) -> None:
        """After a turn was stored: the cache holds what SQL now holds, without a read."""
        history = [*before, ("user", question), ("assistant", answer)]
        await self._cache.put(cache_key(conversation_id, owner_id), history[-self._limit :] if self._limit else [])


def cache_key(conversation_id: str, owner_id: str | None) -> str:
    # Owner in the key: a cached history is only ever served to whoever could read it from SQL.
    return f"{owner_id or '-'}:{conversation_id}"
