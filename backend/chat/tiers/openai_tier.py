"""The `openai` tier: any OpenAI-compatible chat endpoint, streamed, with errors mapped to TierError."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from typing import Any, cast

import openai

from backend.chat.prompt import Prompt
from backend.chat.tiers.base import AlwaysReady, TextDelta, TierError, TokenUsage, parse_retry_after
from backend.settings import OpenAITierSettings


class OpenAITier(AlwaysReady):
    kind = "openai"

    def __init__(self, settings: OpenAITierSettings) -> None:
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
        )

    async def stream(self, prompt: Prompt) -> AsyncGenerator[TextDelta, None]:
        stream = None
        try:
            stream = await self._client.chat.completions.create(
                model=self.settings.model,
                messages=cast(Any, prompt.messages),  # plain role/content dicts, as the API takes them
                max_tokens=prompt.max_tokens,
                temperature=self.settings.temperature,
                stream=True,
                stream_options={"include_usage": True},
            )
            async for chunk in stream:
                usage = None
                if chunk.usage is not None:
                    usage = TokenUsage(
                        prompt_tokens=chunk.usage.prompt_tokens or 0,
                        completion_tokens=chunk.usage.completion_tokens or 0,
                    )
                choice = chunk.choices[0] if chunk.choices else None
                text = (choice.delta.content or "") if choice and choice.delta else ""
                finish = choice.finish_reason if choice else None
                if text or finish or usage:
                    yield TextDelta(text=text, finish_reason=finish, usage=usage)
        except openai.APIStatusError as exc:
            raise _status_error(exc) from None
        except openai.APITimeoutError:
            raise TierError("timeout", f"{self.name}: upstream timed out") from None
        except openai.APIConnectionError:
            raise TierError("connect", f"{self.name}: upstream connection failed") from None
        except openai.APIError as exc:  # an error object sent inside the stream
            raise TierError("stream_error", f"{self.name}: upstream error in stream: {exc.message}") from None
        finally:
            # Runs on normal end, on error and when the consumer closes us (D2): release the socket now.
            if stream is not None:
                await stream.close()

    async def aclose(self) -> None:
        await self._client.close()


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
