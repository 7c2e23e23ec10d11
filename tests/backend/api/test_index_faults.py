"""F6 over HTTP: a slow or stalled vector index, the search queue's admission, and what a failed search leaves."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from backend.settings import IndexSettings, RetrievalSettings
from backend.storage.models import Conversation
from tests.backend.api.harness import Backend, live_app, upstream_tier
from tests.backend.api.streams import assert_error, post_chat, stored_turn
from tests.fakes import ScriptedOpenAI

QUESTION = "What does salt do to the crumb?"
FOLLOW_UP = "And how much salt should the dough get?"


class SlowStore:
    """The app's real store, whose searches take `delay` seconds first: an index that stopped answering."""

    def __init__(self, inner: Any, delay: float) -> None:
        self._inner = inner
        self._delay = delay
        self._searching = 0
        self._lock = threading.Lock()
        self.idle = threading.Event()
        self.idle.set()
        self.busy = threading.Event()

    def search(self, *args: Any, **kwargs: Any) -> Any:
        return self._slowly(self._inner.search, *args, **kwargs)

    def points(self) -> int:
        return int(self._slowly(self._inner.points))

    def _slowly(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self._searching += 1
            self.idle.clear()
            self.busy.set()
        try:
            time.sleep(self._delay)
            return call(*args, **kwargs)
        finally:
            with self._lock:
                self._searching -= 1
                if not self._searching:
                    self.idle.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_f6_slow_index_is_a_bounded_503_without_llm_call(
    fake: ScriptedOpenAI, upstream: ScriptedOpenAI, api_index: Path, tmp_path: Path
) -> None:
    backend = Backend("embedded", "", "")
    index = IndexSettings(timeout_seconds=0.5)
    with live_app(
        template=api_index, workdir=tmp_path, backend=backend, tiers=[upstream_tier(fake)], index=index
    ) as app:
        assert app.server is not None
        retriever = app.server.state["retriever"]
        real_store = retriever.store
        slow = SlowStore(real_store, delay=3)
        retriever.store = slow  # test instrumentation: the same store, made slow
        try:
            async with app.client() as client:
                started = time.monotonic()
                reply = await post_chat(client, {"query": QUESTION})
                elapsed = time.monotonic() - started
                started = time.monotonic()
                ready = await client.get("/readyz")
                ready_elapsed = time.monotonic() - started
        finally:
            await asyncio.to_thread(slow.idle.wait, 10)  # an abandoned search ends on its own
            retriever.store = real_store
        async with app.client() as client:
            recovered = await post_chat(client, {"query": QUESTION})
    body = assert_error(reply, 503, "index_unavailable")
    assert body["retryable"] is True and reply.headers["retry-after"]
    assert elapsed < 2, f"the request waited {elapsed:.1f}s for a store that never answered"
    assert ready.status_code == 503 and ready.json()["checks"]["index"] == "timeout" and ready_elapsed < 2
    assert len(upstream.requests) == 1  # only the recovered turn reached the model
    assert recovered.stream.done


async def test_f6_a_burst_beyond_the_search_queue_is_refused_at_once(
    fake: ScriptedOpenAI, upstream: ScriptedOpenAI, api_index: Path, tmp_path: Path
) -> None:
    """With one search slot and no queue, a second question arriving during a slow search gets a quick 503."""
    backend = Backend("embedded", "", "")
    retrieval = RetrievalSettings(k=4, max_concurrent=1, max_waiting=0)
    with live_app(
        template=api_index, workdir=tmp_path, backend=backend, tiers=[upstream_tier(fake)], retrieval=retrieval
    ) as app:
        assert app.server is not None
        retriever = app.server.state["retriever"]
        real_store = retriever.store
        slow = SlowStore(real_store, delay=1.5)
        retriever.store = slow  # test instrumentation: the same store, made slow
        try:
            async with app.client() as first_client, app.client() as second_client:
                # Another question: one asked already is answered from the search cache, without the slow store.
                first = asyncio.create_task(post_chat(first_client, {"query": "Does rye need more water?"}))
                # Wait until the first search holds the only slot.
                assert await asyncio.to_thread(slow.busy.wait, 10), await first
                started = time.monotonic()
                second = await post_chat(second_client, {"query": FOLLOW_UP})
                refused_after = time.monotonic() - started
                answered = await first
        finally:
            await asyncio.to_thread(slow.idle.wait, 10)
            retriever.store = real_store
    body = assert_error(second, 503, "index_unavailable")
    assert body["retryable"] is True and second.headers["retry-after"] == "1"
    assert refused_after < 0.5, f"refusing a question took {refused_after:.2f}s"
    assert answered.stream.done
    assert len(upstream.requests) == 1  # the refused question never reached the model


@pytest.mark.parametrize(("max_wait", "refused"), [(0.5, True), (5.0, False)])
async def test_f6_the_search_queue_admits_by_expected_wait(
    fake: ScriptedOpenAI, upstream: ScriptedOpenAI, api_index: Path, tmp_path: Path, max_wait: float, refused: bool
) -> None:
    """Searches take 1 s: with one running, a new question would wait ~1 s. Refused at once when that exceeds
    retrieval.max_wait_seconds, served after its turn in the queue when it does not."""
    backend = Backend("embedded", "", "")
    retrieval = RetrievalSettings(k=4, max_concurrent=1, max_waiting=100, max_wait_seconds=max_wait)
    with live_app(
        template=api_index, workdir=tmp_path, backend=backend, tiers=[upstream_tier(fake)], retrieval=retrieval
    ) as app:
        assert app.server is not None
        retriever = app.server.state["retriever"]
        real_store = retriever.store
        slow = SlowStore(real_store, delay=1.0)
        retriever.store = slow  # test instrumentation: the same store, made slow
        try:
            async with app.client() as first_client, app.client() as second_client:
                assert (await post_chat(first_client, {"query": QUESTION})).stream.done  # the gate learns 1 s
                slow.busy.clear()
                # Another question: one asked already is answered from the search cache, without the slow store.
                first = asyncio.create_task(post_chat(first_client, {"query": "Does rye need more water?"}))
                assert await asyncio.to_thread(slow.busy.wait, 10), await first
                started = time.monotonic()
                second = await post_chat(second_client, {"query": FOLLOW_UP})
                waited = time.monotonic() - started
                first_still_searching = not slow.idle.is_set()
                answered = await first
        finally:
            await asyncio.to_thread(slow.idle.wait, 10)
            retriever.store = real_store
    assert answered.stream.done
    if refused:
        body = assert_error(second, 503, "index_unavailable")
        assert second.headers["retry-after"] == "1" and body["retryable"] is True
        # At once: while the search ahead of it still runs, not after it. Not a bound in seconds: the tests' client
        # and the app share one process, whose own pauses are not the gate's (a refusal once took 0.58 s in CI).
        assert first_still_searching, f"refusing a question took {waited:.2f}s, as long as the search ahead of it"
    else:
        assert second.stream.done, second
        assert waited > 1.0  # it queued behind the running search


async def test_f6_a_failed_search_leaves_no_question_stored(
    fake: ScriptedOpenAI, upstream: ScriptedOpenAI, api_index: Path, tmp_path: Path
) -> None:
    """The question is stored while the search runs; a search that fails takes it back: the 503's retry is the
    only copy, in a new conversation and in an existing one."""
    backend = Backend("embedded", "", "")
    with live_app(
        template=api_index,
        workdir=tmp_path,
        backend=backend,
        tiers=[upstream_tier(fake)],
        # Room for the first, unfaulted search on a loaded machine; the slow store's 2 s still run past it.
        index=IndexSettings(timeout_seconds=1.0),
    ) as app:
        assert app.server is not None
        retriever = app.server.state["retriever"]
        real_store = retriever.store
        async with app.client() as client:
            first = await post_chat(client, {"query": QUESTION})
            follow_up = {"query": FOLLOW_UP, "conversation_id": first.conversation_id}
            slow = SlowStore(real_store, delay=2)
            retriever.store = slow  # test instrumentation: the same store, made slow
            try:
                refused_new = await post_chat(client, {"query": "Does rye need more water?"})
                refused_follow_up = await post_chat(client, follow_up)
            finally:
                await asyncio.to_thread(slow.idle.wait, 10)
                retriever.store = real_store
            async with app.db() as db:
                after_refusals = await stored_turn(db, first.conversation_id)
                async with db() as session:
                    conversations = await session.scalar(select(func.count()).select_from(Conversation))
            retried = await post_chat(client, follow_up)
            async with app.db() as db:
                after_retry = await stored_turn(db, first.conversation_id)
    assert_error(refused_new, 503, "index_unavailable")
    assert_error(refused_follow_up, 503, "index_unavailable")
    assert conversations == 1, "the refused new conversation was kept"
    assert [m.content for m in after_refusals.messages] == [QUESTION, first.stream.text]
    assert retried.stream.done
    assert [(m.role, m.content) for m in after_retry.messages[2:]] == [
        ("user", FOLLOW_UP),
        ("assistant", retried.stream.text),
    ]
    assert [m.seq for m in after_retry.messages] == [0, 1, 2, 3]
