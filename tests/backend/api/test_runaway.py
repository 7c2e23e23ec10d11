"""A runaway upstream, one that ignores max_tokens and goes on streaming, is cut off past its tier's character cap
(32 characters for each token of max_tokens by default): the answer so far is sent, stored and ended with
finish_reason "length", and the upstream is closed, on each relay (a held answer: test_cascade.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.settings import OpenAITierSettings
from tests.backend.api.harness import TEST_SERVER, Backend, LiveApp, extractive_tier, live_app
from tests.backend.api.streams import assert_turn_stored, post_chat
from tests.fakes import Script, ScriptedOpenAI

QUESTION = "What does salt do to the crumb?"
MAX_TOKENS = 24  # a cap of 32 x 24 = 768 characters
WORDS = [f" word{i:03d}" for i in range(2_000)]  # 16,000 characters, far past the cap


def capped_tier(fake: ScriptedOpenAI) -> OpenAITierSettings:
    return OpenAITierSettings(
        name="upstream",
        base_url=fake.base_url,
        model="scripted",
        max_tokens=MAX_TOKENS,
        first_token_timeout_seconds=5,
        idle_timeout_seconds=2,
    )


@pytest.fixture(scope="module", params=["native", "python"])
def capped_app(
    request: pytest.FixtureRequest,
    backend: Backend,
    fake: ScriptedOpenAI,
    api_index: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveApp]:
    """The scripted upstream with the default cap, relayed in C or in Python."""
    with live_app(
        template=api_index,
        workdir=tmp_path_factory.mktemp(f"runaway-{request.param}-{backend.name}"),
        backend=backend,
        tiers=[capped_tier(fake), extractive_tier()],
        server=TEST_SERVER.model_copy(update={"native_token_path": request.param == "native"}),
    ) as app:
        yield app


async def test_a_runaway_answer_is_cut_off_sent_and_stored_with_finish_reason_length(
    capped_app: LiveApp, upstream: ScriptedOpenAI
) -> None:
    upstream.enqueue(Script(tokens=[" Salt [1]", *WORDS], token_interval=0.001))
    async with capped_app.client() as client:
        reply = await post_chat(client, {"query": QUESTION})
    stream = reply.stream
    assert reply.status == 200 and stream.terminal.name == "done", reply.raw[-300:]
    assert stream.done["finish_reason"] == "length"
    full = "".join([" Salt [1]", *WORDS])
    cap = 32 * MAX_TOKENS
    assert stream.text == full[:cap]  # cut at the cap, however the pieces were read
    async with capped_app.db() as db:
        await assert_turn_stored(db, reply, question=QUESTION)
    assert upstream.wait_streams_closed(5)  # the upstream was let go at once, not read to its end
