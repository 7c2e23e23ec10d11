"""The `openai` tier: any OpenAI-compatible chat endpoint, streamed, with errors mapped to TierError."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import cast
from urllib.parse import urlsplit

import httpx2
import openai
import orjson

from backend.chat.prompt import Prompt
from backend.chat.tiers.base import AlwaysReady, TextDelta, TierError, parse_retry_after
from backend.chat.tiers.sse_deltas import ChatStreamDecoder
from backend.chat.tiers.upstream_connection import Tap
from backend.chat.tiers.upstream_transport import BODY_EXTENSION, ResponseBody, UpstreamTransport
from backend.settings import OpenAITierSettings

# No cap on connections to one upstream (the SDK's default is 1,000, as many as one worker may stream): the
# service's own admission (stream slots, rate limits) bounds them. Idle ones are kept as the SDK keeps them.
UPSTREAM_LIMITS = httpx2.Limits(max_connections=None, max_keepalive_connections=100, keepalive_expiry=5.0)


class OpenAITier(AlwaysReady):
    kind = "openai"

    def __init__(self, settings: OpenAITierSettings, *, transport: httpx2.AsyncBaseTransport | None = None) -> None:
        if not settings.base_url or not settings.model:
            raise ValueError(f"tier {settings.name!r}: kind openai needs base_url and model")
        self.name = settings.name
        self.settings = settings
        # Local servers accept any key; a real provider's key only ever comes from the environment.
        api_key = os.environ.get(settings.api_key_env, "") if settings.api_key_env else ""
        slowest = max(settings.first_token_timeout_seconds, settings.idle_timeout_seconds)
        self.client = openai.AsyncOpenAI(
            base_url=settings.base_url,
            api_key=api_key or "not-needed",
            # The cascade decides about retries (INV-5: one call per tier per turn) and enforces the real
            # first-token and idle deadlines; these client timeouts are only a backstop.
            max_retries=0,
            timeout=openai.Timeout(slowest + 5.0, connect=settings.first_token_timeout_seconds),
            # HTTP/1.1 on asyncio sockets, parsed in C (upstream_transport.py): a cheaper read per streamed token.
            # Behind a proxy from the environment (HTTP(S)_PROXY, NO_PROXY), httpx's own transport, which speaks it.
            http_client=openai.DefaultAsyncHttpxClient(
                transport=transport
                or (UpstreamTransport(limits=UPSTREAM_LIMITS) if _direct(settings.base_url) else None),
                limits=UPSTREAM_LIMITS,
            ),
        )

    def stream(self, prompt: Prompt) -> OpenAIStream:
        return OpenAIStream(self, prompt)

    async def aclose(self) -> None:
        await self.client.close()


class OpenAIStream:
    """One streamed answer, one delta per network read: the SDK opens the request (auth, errors, status mapping)
    and hands us its raw response, whose bytes `ChatStreamDecoder` reads without building a typed chunk per token.

    Read it as an async iterator, or, once it has answered, have it push (`push`): each read is then decoded and
    handed on inside the socket's callback, with no task step, future or generator per token (chat/relay.py).
    Closed (`aclose`) on its end, on an error, and when the consumer leaves (D2): the socket is released then.
    """

    def __init__(self, tier: OpenAITier, prompt: Prompt) -> None:
        self._tier = tier
        self._prompt = prompt
        self._response: httpx2.Response | None = None  # once the upstream answered
        self._body: AsyncIterator[bytes] | None = None
        self._decoder = ChatStreamDecoder()
        self._closed = False
        self._on_delta: Callable[[TextDelta], None] | None = None
        self._on_end: Callable[[BaseException | None], None] | None = None
        self._held = False

    def __aiter__(self) -> OpenAIStream:
        return self

    async def __anext__(self) -> TextDelta:
        try:
            if self._body is None:
                await self._open()
            body, decoder = self._body, self._decoder
            assert body is not None
            while not decoder.done and not self._closed:
                delta = decoder.feed(await anext(body))
                if delta is not None:
                    return delta
        except StopAsyncIteration:
            pass
        except Exception as exc:
            await self.aclose()
            raise _tier_error(self._tier.name, exc) from None
        await self.aclose()
        raise StopAsyncIteration

    async def _open(self) -> None:
        settings = self._tier.settings
        body = {
            "model": settings.model,
            "messages": self._prompt.messages,
            "max_tokens": self._prompt.max_tokens,
            "temperature": settings.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        # The SDK's client sends it (base URL, auth and default headers, timeouts, HTTP errors as APIStatusError)
        # and, asked for `httpx.Response`, hands the response back unread. The body is plain values serialised
        # here: the typed `create` walked its params and wrapped the response, ~0.3 ms of the event loop a turn.
        # orjson's bytes keep its whole write buffer (64 KiB for a 5 KB prompt), and httpx keeps the request body
        # for as long as the stream lasts: the exact-size copy is what stays.
        content = memoryview(orjson.dumps(body)).tobytes()
        http = await self._tier.client.post("/chat/completions", cast_to=httpx2.Response, content=content, stream=True)
        self._response = http
        # Without a content coding the body is read from our transport's own `ResponseBody`: httpx's generator
        # layers (elapsed time, raw bytes, decoding) only pass each piece on. The response still closes it.
        if "content-encoding" in http.headers:
            self._body = aiter(http.aiter_bytes())
        else:
            body_stream = http.extensions.get(BODY_EXTENSION) or http.stream  # httpx's own transport: its stream
            self._body = aiter(cast(AsyncIterable[bytes], body_stream))

    # -- push mode ---------------------------------------------------------------------------------------------------

    def push(self, on_delta: Callable[[TextDelta], None], on_end: Callable[[BaseException | None], None]) -> bool:
        """From now on hand every delta to `on_delta` as it arrives, then call `on_end` once (None: the answer is
        complete; else the TierError). False when this stream cannot push (a proxy's or compressed body): iterate it."""
        body = self._body
        if not isinstance(body, ResponseBody) or self._closed or self._decoder.done:
            return False
        self._on_delta, self._on_end = on_delta, on_end
        body.listen(self._pushed)
        self._pushed()  # what arrived before
        return True

    def hold(self) -> None:
        """Pushes nothing and leaves the socket unread until `release`."""
        self._held = True
        if isinstance(self._body, ResponseBody):
            self._body.hold()

    def release(self) -> None:
        self._held = False
        if isinstance(self._body, ResponseBody):
            self._body.release()
        if self._on_end is not None:
            self._pushed()  # what arrived, or broke, while held

    def _pushed(self) -> None:
        """The socket's callback: decode what arrived and hand it on. Never raises into the event loop."""
        if self._held:
            return
        body = cast(ResponseBody, self._body)  # push() checked it
        try:
            data = body.read_now()
            if data is None:
                self._ended(None)
            elif data:
                delta = self._decoder.feed(data)
                if delta is not None and self._on_delta is not None:
                    self._on_delta(delta)
                if self._decoder.done:
                    self._ended(None)
        except Exception as exc:
            self._ended(_tier_error(self._tier.name, exc))

    # -- the native pipe (chat/native_relay.py) ----------------------------------------------------------------------

    def pipe_tap(self) -> Tap | None:
        """The connection's native tap, when from here on this body can be piped in C (None: push or iterate).
        The tap goes on from the decoder's state (`hand_off`)."""
        body = self._body
        if not isinstance(body, ResponseBody) or self._closed or self._decoder.done or self._on_end is not None:
            return None
        return body.connection.tap

    def hand_off(self) -> tuple[bytes, list[bytes]]:
        return self._decoder.hand_off()

    def listen(self, notify: Callable[[], None] | None) -> None:
        """While piped: `notify()` when bytes were kept (the tap held), the body ended, or the connection broke."""
        cast(ResponseBody, self._body).listen(notify)

    def read_kept(self) -> bytes | None:
        """While piped: the bytes kept while the tap held (b"" if none); None once the body ended. Raises the
        TierError of a broken connection."""
        try:
            return cast(ResponseBody, self._body).read_now()
        except Exception as exc:
            raise _tier_error(self._tier.name, exc) from None

    def stream_error(self, message: str) -> TierError:
        """The tap found the stream broken (an event not JSON, or an error object)."""
        return TierError("stream_error", message)

    def _ended(self, error: BaseException | None) -> None:
        on_end = self._on_end
        self._on_delta = self._on_end = None
        if isinstance(self._body, ResponseBody):
            self._body.listen(None)
        if on_end is not None:
            on_end(error)

    async def aclose(self) -> None:
        """Release the upstream now (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._on_delta = self._on_end = None
        if self._response is not None:
            await self._response.aclose()


def _tier_error(tier: str, exc: Exception) -> Exception:
    """The TierError an upstream failure means (anything else is returned as it is)."""
    if isinstance(exc, openai.APIStatusError):
        return _status_error(exc)
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return TierError("timeout", f"{tier}: upstream timed out")
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):  # refused, or broken while streaming
        return TierError("connect", f"{tier}: upstream connection failed")
    if isinstance(exc, openai.APIError):
        return TierError("stream_error", f"{tier}: upstream error: {exc.message}")
    if isinstance(exc, httpx2.HTTPError):  # a stream the client could not read (bad encoding, …)
        return TierError("stream_error", f"{tier}: upstream stream unreadable: {type(exc).__name__}")
    return exc


def _direct(base_url: str) -> bool:
    """Whether the environment's proxy settings leave this upstream to be reached directly."""
    url = urlsplit(base_url)
    proxies = urllib.request.getproxies()
    if url.scheme not in proxies and "all" not in proxies:
        return True
    return bool(urllib.request.proxy_bypass(url.hostname or ""))


def _status_error(exc: openai.APIStatusError) -> TierError:
    status = exc.status_code
    retry_after = parse_retry_after(exc.response.headers) if exc.response is not None else None
    if status == 429:
        reason = "status_429"
    elif status >= 500:
        reason = "status_5xx"
    else:
        reason = "status_4xx"
    return TierError(reason, f"upstream answered HTTP {status}", retry_after=retry_after)
