"""The `openai` tier: any OpenAI-compatible chat endpoint, streamed, with errors mapped to TierError."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import AsyncGenerator
from typing import Any, cast
from urllib.parse import urlsplit

import httpx2
import openai

from backend.chat.prompt import Prompt
from backend.chat.tiers.base import AlwaysReady, TextDelta, TierError, parse_retry_after
from backend.chat.tiers.sse_deltas import ChatStreamDecoder
from backend.chat.tiers.upstream_transport import UpstreamTransport
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
        self._client = openai.AsyncOpenAI(
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

    async def stream(self, prompt: Prompt) -> AsyncGenerator[TextDelta, None]:
        """One delta per network read: the SDK opens the request (auth, errors, status mapping) and hands us
        its raw response, whose bytes `ChatStreamDecoder` reads without building a typed chunk per token."""
        try:
            # Closed on normal end, on error and when the consumer closes us (D2): the socket is released now.
            async with self._client.chat.completions.with_streaming_response.create(
                model=self.settings.model,
                messages=cast(Any, prompt.messages),  # plain role/content dicts, as the API takes them
                max_tokens=prompt.max_tokens,
                temperature=self.settings.temperature,
                stream=True,
                stream_options={"include_usage": True},
            ) as response:
                decoder = ChatStreamDecoder()
                http = response.http_response
                # Without a content coding the body is the transport's own iterator: httpx's two generator layers
                # (raw bytes, then decoding) only pass each piece on.
                body = http.stream if "content-encoding" not in http.headers else http.aiter_bytes()
                async for chunk in body:  # type: ignore[union-attr]  # httpx's async stream, as the transport gave it
                    delta = decoder.feed(chunk)
                    if delta is not None:
                        yield delta
                    if decoder.done:
                        return
        except openai.APIStatusError as exc:
            raise _status_error(exc) from None
        except (openai.APITimeoutError, httpx2.TimeoutException):
            raise TierError("timeout", f"{self.name}: upstream timed out") from None
        except (openai.APIConnectionError, httpx2.TransportError):  # refused, or broken while reading the stream
            raise TierError("connect", f"{self.name}: upstream connection failed") from None
        except openai.APIError as exc:
            raise TierError("stream_error", f"{self.name}: upstream error: {exc.message}") from None
        except httpx2.HTTPError as exc:  # a stream the client could not read (bad encoding, …)
            raise TierError("stream_error", f"{self.name}: upstream stream unreadable: {type(exc).__name__}") from None

    async def aclose(self) -> None:
        await self._client.close()


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
