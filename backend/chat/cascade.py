"""The tier cascade: fall back across tiers until one yields a first token, then stream only that one."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast

import anyio

from backend import tracing
from backend.chat.circuit import CircuitBreaker
from backend.chat.prompt import Prompt
from backend.chat.text_buffer import TextBuffer
from backend.chat.tiers.base import NOT_ASKED, PipedDeltas, PushingDeltas, TextDelta, Tier, TierError, TokenUsage
from backend.chat.tokens import count_tokens
from backend.errors import ErrorCode, LorechatError
from backend.metrics import TIER_FALLBACKS
from backend.settings import CircuitSettings

log = logging.getLogger(__name__)

# Longer answers are counted off the event loop (TierStream.usage).
INLINE_COUNT_CHARS = 8192

# A runaway upstream (one that ignores max_tokens) is cut off past this many characters for each token of the
# budget, unless its tier sets max_answer_chars: far above any tokenizer's average (~4 for English).
RUNAWAY_CHARS_PER_TOKEN = 32

# Does a held tier's whole answer stand on the sources? (service.py asks the claim check.)
AnswerGate = Callable[[str], Awaitable[bool]]


class TierStream:
    """The answer of the tier that produced a first token. Iterates non-empty text pieces.

    After the first token nothing falls back: an upstream failure raises upstream_interrupted (F9); a silence
    longer than `idle_seconds` is the turn's watchdog's to catch (running.py), which then reports `stalled()`
    (F10). No timer per piece: that cost more than relaying it. Consume and close it from one task;
    `aclose()` releases the upstream at once (D2).
    """

    def __init__(
        self,
        *,
        tier: Tier,
        prompt: Prompt,
        deltas: AsyncIterator[TextDelta],
        first: str,
        fallbacks: list[tuple[str, str]],
        usage: TokenUsage | None,
        finish_reason: str | None,
        attempt: tracing.Attempt = tracing.NO_ATTEMPT,
    ) -> None:
        self.tier: str = tier.name
        self.attempt = attempt  # its span in the turn's trace (backend/tracing.py), ended with the answer
        self.kind: str = tier.kind
        self.prompt = prompt
        self.fallbacks = fallbacks  # (tier, reason) for each tier skipped or failed before this one
        self.finish_reason = finish_reason
        self._deltas = deltas
        self.idle_seconds = tier.settings.idle_timeout_seconds
        self._pending: str | None = first
        self._text = TextBuffer()
        self._upstream_usage = usage
        self._finished = False
        self._closed = False
        self._on_text: Callable[[str], None] = _ignore
        self._on_end: Callable[[LorechatError | None], None] = _ignore
        self._char_cap = answer_char_cap(tier, prompt)  # 0: none
        self._chars = 0
        self._cut = False  # the answer reached its cap

    @property
    def text(self) -> str:
        """Everything yielded so far."""
        return str(self._text)

    async def usage(self) -> TokenUsage:
        """The upstream's figures when it reported them, else cl100k counts of the prompt and the text. A long
        text is counted in a worker thread (tiktoken lets go of the GIL): ~0.05-0.2 µs a character on the event
        loop would let a runaway upstream's megabytes stall every open stream."""
        if self._upstream_usage is not None:
            return self._upstream_usage
        text = self.text
        if len(text) <= INLINE_COUNT_CHARS:
            completion = count_tokens(text)
        else:
            completion = await anyio.to_thread.run_sync(count_tokens, text)
        return TokenUsage(prompt_tokens=self.prompt.prompt_tokens, completion_tokens=completion)

    def __aiter__(self) -> TierStream:
        return self

    async def __anext__(self) -> str:
        if self._pending is not None:
            text, self._pending = self._capped(self._pending), None
            self._text.append(text)
            if self._cut:
                await self.aclose()
            return text
        if self._finished or self._closed:
            raise StopAsyncIteration
        try:
            while True:
                delta = await anext(self._deltas)
                self.absorb(delta.finish_reason, delta.usage)
                if delta.text:
                    text = self._capped(delta.text)
                    self._text.append(text)
                    if self._cut:
                        await self.aclose()
                    return text
        except StopAsyncIteration:
            self._finished = True
            self.finish_reason = self.finish_reason or "stop"
            raise
        except Exception as exc:  # a TierError, or anything else the upstream client threw mid-answer
            await self.aclose()
            raise self._interrupted(exc) from None

    def push(self, on_text: Callable[[str], None], on_end: Callable[[LorechatError | None], None]) -> bool:
        """Push mode (chat/relay.py): every further non-empty piece goes to `on_text` as it arrives, inside the
        upstream socket's callback, then `on_end` is called once (None: complete; else upstream_interrupted, F9).
        False when the tier cannot push (or a piece is still pending): iterate instead."""
        deltas = self._deltas
        if not isinstance(deltas, PushingDeltas) or self._pending is not None or self._finished or self._closed:
            return False
        self._on_text, self._on_end = on_text, on_end
        return bool(deltas.push(self._pushed, self._push_ended))

    def hold(self) -> None:
        """In push mode: nothing more is pushed, and the upstream's socket is not read, until `release`."""
        cast(PushingDeltas, self._deltas).hold()  # push() succeeded: the deltas push

    def release(self) -> None:
        cast(PushingDeltas, self._deltas).release()

    @property
    def chars_left(self) -> int:
        """Characters the answer may still have before it is cut off (0: no cap)."""
        return max(self._char_cap - self._chars, 1) if self._char_cap else 0

    def cut(self) -> None:
        """The answer reached its cap (a runaway upstream): it is complete, with finish_reason "length"."""
        if not self._cut:
            log.warning("tier %s went on past %d characters of answer: cut off", self.tier, self._char_cap)
        self._cut = self._finished = True
        self.finish_reason = "length"

    def _capped(self, text: str) -> str:
        """A piece, as far as the cap allows: the piece that reaches it is cut there, and ends the answer."""
        room = self._char_cap - self._chars
        if not self._char_cap or len(text) < room:
            self._chars += len(text)
            return text
        self._chars = self._char_cap
        self.cut()
        return text[:room]

    def pipe_source(self) -> Any:
        """The tier's stream when it can be piped natively from here on (chat/native_relay.py), else None."""
        deltas = self._deltas
        if not isinstance(deltas, PipedDeltas) or self._pending is not None or self._finished or self._closed:
            return None
        return deltas if deltas.pipe_tap() is not None else None

    def piped(self, text: str) -> None:
        """Text the native relay wrote (the stream's text holds only what was sent, in that case)."""
        if text:
            self._text.append(text)
            self._chars += len(text)

    def absorb(self, finish_reason: str | None, usage: TokenUsage | None) -> None:
        """A piece's finish reason and usage figures, from the stream or the native relay's tap."""
        if finish_reason:
            self.finish_reason = finish_reason
        if usage is not None:
            self._upstream_usage = usage

    def ended(self, error: BaseException | None) -> LorechatError | None:
        """The answer's end in push or pipe mode: None when complete, else the error the visitor gets (F9)."""
        if error is None:
            self._finished = True
            self.finish_reason = self.finish_reason or "stop"
            return None
        return self._interrupted(error)

    def _pushed(self, delta: TextDelta) -> None:
        if delta.finish_reason or delta.usage is not None:
            self.absorb(delta.finish_reason, delta.usage)
        if delta.text:
            text = self._capped(delta.text)
            self._text.append(text)
            self._on_text(text)
            if self._cut:
                self.hold()
                self._on_end(None)

    def _push_ended(self, error: BaseException | None) -> None:
        self._on_end(self.ended(error))

    def _interrupted(self, cause: BaseException) -> LorechatError:
        """The tier broke off mid-answer (F9): logged, and the error the visitor gets."""
        log.warning("tier %s failed mid-answer: %s", self.tier, getattr(cause, "reason", type(cause).__name__))
        return LorechatError(
            ErrorCode.upstream_interrupted, "The answer was interrupted; please try again.", extra={"tier": self.tier}
        )

    def stalled(self) -> LorechatError:
        """The error for a tier silent past its idle timeout (the turn's watchdog measures it: running.py)."""
        return LorechatError(
            ErrorCode.upstream_stalled, "The answer stopped arriving; please try again.", extra={"tier": self.tier}
        )

    async def aclose(self) -> None:
        """Stop the upstream now (idempotent): closes the HTTP response / stops the local model."""
        if self._closed:
            return
        self._closed = True
        await _close(self._deltas)


def answer_char_cap(tier: Tier, prompt: Prompt) -> int:
    """The most characters an answer of this tier may have (0: no cap)."""
    cap = tier.settings.max_answer_chars
    return RUNAWAY_CHARS_PER_TOKEN * prompt.max_tokens if cap is None else cap


def _ignore(_: object) -> None:
    return None


async def _nothing_more() -> AsyncGenerator[TextDelta, None]:
    """The rest of a held answer: it was read whole before its first token went out."""
    return
    yield  # pragma: no cover - makes this an async generator


async def _ask(supported: AnswerGate, text: str, tier: str) -> str:
    """`supported`, `unsupported`, or `check_failed` when the check itself broke (the answer is not shown
    unchecked: the next tier answers)."""
    try:
        return "supported" if await supported(text) else "unsupported"
    except Exception:
        log.exception("the claim check of tier %s's held answer failed", tier)
        return "check_failed"


async def _close(deltas: AsyncIterator[TextDelta]) -> None:
    aclose = getattr(deltas, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except RuntimeError:
        # "already running": another task is inside it; cancelling that task closes it instead.
        log.warning("tier stream closed while another task was reading it")
    except Exception:
        log.exception("closing a tier stream failed")


class Cascade:
    """Tiers in order of preference, each behind its own circuit breaker."""

    def __init__(
        self,
        tiers: Sequence[Tier],
        circuit: CircuitSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not tiers:
            raise ValueError("a cascade needs at least one tier")
        self.tiers = list(tiers)
        self.breakers = {tier.name: CircuitBreaker(tier.name, circuit, clock=clock) for tier in self.tiers}

    async def start(self, build: Callable[[Tier], Prompt], *, supported: AnswerGate | None = None) -> TierStream:
        """Open the first tier that streams a non-empty token within its first-token timeout.

        `build(tier)` makes the prompt for that tier's context window. Each tier is tried at most once
        (INV-5); tiers with an open circuit are skipped. A tier set to `hold_until_supported` must deliver its
        whole answer within that timeout, and `supported(text)` must accept it, before its first token goes
        out; otherwise the next tier answers (reason `unsupported`), still before anything was streamed.
        Raises all_tiers_failed when none answers.
        """
        fallbacks: list[tuple[str, str]] = []
        for tier in self.tiers:
            attempt = tracing.tier_attempt(tier)  # one span per tier tried, never per token
            breaker = self.breakers[tier.name]
            if not breaker.allow():
                self._fell_back(fallbacks, tier, "circuit_open", attempt)
                continue
            try:
                prompt = build(tier)
            except BaseException:
                breaker.release()
                raise
            skip = tier.skip_reason(prompt)
            if skip == NOT_ASKED:  # a tier for some questions only (curated): not this one, and not a fallback
                breaker.release()
                continue
            if skip is not None:  # starting, busy, too slow for this prompt: not a failure of the tier
                breaker.release()
                self._fell_back(fallbacks, tier, skip, attempt)
                continue
            gate = supported if tier.settings.hold_until_supported else None  # None: stream at once
            attempt.called(prompt)
            deltas = tier.stream(prompt)
            usage: TokenUsage | None = None
            finish: str | None = None
            pieces: list[str] = []
            cap, held_chars = answer_char_cap(tier, prompt), 0
            try:
                async with asyncio.timeout(tier.settings.first_token_timeout_seconds):
                    while True:
                        try:
                            delta = await anext(deltas)
                        except StopAsyncIteration:
                            if gate is not None and pieces:
                                break  # the whole held answer is in
                            raise
                        usage = delta.usage or usage
                        finish = delta.finish_reason or finish
                        if delta.text:
                            pieces.append(delta.text)
                            if gate is None:
                                break
                            held_chars += len(delta.text)
                            if cap and held_chars >= cap:  # a runaway, held: what came so far is the answer
                                finish = "length"
                                await _close(deltas)
                                break
            except asyncio.CancelledError:
                breaker.release()
                await _close(deltas)
                attempt.abandoned()
                raise
            except StopAsyncIteration:
                breaker.record_failure()
                self._fell_back(fallbacks, tier, "empty", attempt)
            except TimeoutError:
                await _close(deltas)
                breaker.record_failure()
                self._fell_back(fallbacks, tier, "first_token_timeout", attempt)
            except TierError as exc:
                await _close(deltas)
                breaker.record_failure(retry_after=exc.retry_after, throttled=exc.reason == "status_429")
                self._fell_back(fallbacks, tier, exc.reason, attempt)
            except Exception:
                log.exception("tier %s raised before its first token", tier.name)
                await _close(deltas)
                breaker.record_failure()
                self._fell_back(fallbacks, tier, "error", attempt)
            else:
                # The tier works (a held answer the check rejects is a quality verdict, not an outage).
                breaker.record_success()
                if gate is not None:
                    await _close(deltas)
                    verdict = await _ask(gate, "".join(pieces), tier.name)
                    if verdict != "supported":
                        self._fell_back(fallbacks, tier, verdict, attempt)
                        continue
                    deltas = _nothing_more()
                attempt.answered()
                return TierStream(
                    tier=tier,
                    prompt=prompt,
                    deltas=deltas,
                    first="".join(pieces),
                    fallbacks=fallbacks,
                    usage=usage,
                    finish_reason=finish,
                    attempt=attempt,
                )
        waits = [w for w in (b.retry_in() for b in self.breakers.values()) if w is not None]
        raise LorechatError(
            ErrorCode.all_tiers_failed,
            "No answer could be generated right now; please try again shortly.",
            retry_after=max(1, round(min(waits))) if waits else None,
        )

    def _fell_back(
        self, fallbacks: list[tuple[str, str]], tier: Tier, reason: str, attempt: tracing.Attempt = tracing.NO_ATTEMPT
    ) -> None:
        fallbacks.append((tier.name, reason))
        attempt.skipped(reason)
        TIER_FALLBACKS.labels(tier=tier.name, reason=reason).inc()
        log.info("tier %s skipped: %s", tier.name, reason)

    async def warm(self, *, wait_seconds: float = 0.0) -> None:
        """Start local models now (call from the lifespan) so the first visitor does not pay for it; wait
        at most `wait_seconds` for them (the API serves meanwhile: a starting tier is skipped)."""
        for tier in self.tiers:
            await tier.warm(wait_seconds=wait_seconds)

    async def aclose(self) -> None:
        """Release every tier's resources (call once, at shutdown)."""
        for tier in self.tiers:
            try:
                await tier.aclose()
            except Exception:
                log.exception("closing tier %s failed", tier.name)
