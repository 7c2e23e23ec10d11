"""The tier contract: a named way to stream an answer for a Prompt, failing with a TierError."""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from backend.chat.prompt import Prompt
from backend.settings import CuratedTierSettings, TierSettings

# A tier that answers only some questions (the curated tier) passes the others on with this reason: not a
# fallback, so the cascade neither lists it in `skipped` nor counts it against the tier.
NOT_ASKED = "not_asked"


@dataclass(frozen=True, slots=True)
class TokenUsage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class TextDelta:
    """One streamed piece. The last one may carry only `finish_reason` and/or `usage` (with text "")."""

    text: str
    finish_reason: str | None = None
    usage: TokenUsage | None = None


class TierError(Exception):
    """A tier could not answer. `reason` is a short metric label: connect, timeout, status_429,
    status_5xx, status_4xx, stream_error, empty, model_error, context_overflow."""

    def __init__(self, reason: str, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason
        self.retry_after = retry_after


@runtime_checkable
class Tier(Protocol):
    name: str
    kind: str

    @property
    def settings(self) -> TierSettings | CuratedTierSettings:
        """The tier's own settings (read-only here: each kind has its own settings class)."""
        ...

    @property
    def prompt_budget(self) -> int | None:
        """Most prompt tokens (cl100k) this tier should be given now; None: its context window decides."""
        ...

    @property
    def status(self) -> str:
        """`ready`, or why not (`starting`, `restarting`, `broken`…), for /readyz."""
        ...

    def skip_reason(self, prompt: Prompt) -> str | None:
        """Why the cascade should pass this tier over without calling it (None: try it); NOT_ASKED when the tier
        does not take this question at all."""
        ...

    async def warm(self, *, wait_seconds: float = 0.0) -> None:
        """Start or load what the tier needs (from the lifespan), waiting at most `wait_seconds`."""
        ...

    def stream(self, prompt: Prompt) -> AsyncIterator[TextDelta]:
        """An async iterator (a generator, say) of deltas, with an `aclose()` that releases the upstream promptly.
        One that is also `PushingDeltas` (openai_tier.OpenAIStream) is relayed from the socket's callback after
        its first token (chat/relay.py), and one that is `PipedDeltas` in C (chat/native_relay.py)."""
        ...

    async def aclose(self) -> None:
        """Release long-lived resources (HTTP clients, models) at shutdown."""
        ...


@runtime_checkable
class PushingDeltas(Protocol):
    """A tier stream that can also push its deltas from the socket's callback (openai_tier.OpenAIStream): the
    push relay (chat/relay.py) uses it after the first token."""

    def push(self, on_delta: Callable[[TextDelta], None], on_end: Callable[[BaseException | None], None]) -> bool:
        """Hand every further delta to `on_delta` as it arrives, then call `on_end` once; False: iterate instead."""
        ...

    def hold(self) -> None:
        """Push nothing, and leave the socket unread, until `release`."""
        ...

    def release(self) -> None: ...


@runtime_checkable
class PipedDeltas(Protocol):
    """A tier stream whose body the native relay (chat/native_relay.py) can pipe in C from here on."""

    def pipe_tap(self) -> Any:
        """The connection's native tap, or None when this body cannot be piped now."""
        ...


class AlwaysReady:
    """The defaults of a tier with nothing to start and no reason to be skipped."""

    prompt_budget: int | None = None
    status = "ready"

    def skip_reason(self, prompt: Prompt) -> str | None:
        return None

    async def warm(self, *, wait_seconds: float = 0.0) -> None:
        return None


def parse_retry_after(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None when absent/bad."""
    if not headers:
        return None
    value = headers.get("retry-after") or headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)
