"""The token path's byte handling: the upstream's SSE read without typed chunks, and token frames from bytes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.chat.tiers.base import TierError, TokenUsage
from backend.chat.tiers.sse_deltas import ChatStreamDecoder
from backend.stream.events import TokenEvent, frame, token_frame


def chunk(content: str | None = None, *, finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    event: dict[str, object] = {"id": "c", "object": "chat.completion.chunk", "choices": []}
    if content is not None or finish is not None:
        event["choices"] = [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]
    if usage is not None:
        event["usage"] = usage
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def test_tokens_read_together_become_one_delta() -> None:
    decoder = ChatStreamDecoder()
    delta = decoder.feed(chunk("Salt") + chunk(" tightens") + chunk(" gluten"))
    assert delta is not None and delta.text == "Salt tightens gluten"
    assert delta.finish_reason is None and delta.usage is None


def test_events_split_anywhere_across_reads_lose_nothing() -> None:
    stream = chunk("Two") + chunk(" percent", finish=None) + chunk(None, finish="stop") + b"data: [DONE]\n\n"
    for cut in range(1, len(stream)):
        decoder = ChatStreamDecoder()
        deltas = [decoder.feed(stream[:cut]), decoder.feed(stream[cut:])]
        text = "".join(d.text for d in deltas if d is not None)
        assert text == "Two percent", cut
        assert [d.finish_reason for d in deltas if d is not None and d.finish_reason] == ["stop"]
        assert decoder.done


def test_crlf_comments_and_multiline_data_follow_the_sse_rules() -> None:
    event = json.dumps({"choices": [{"delta": {"content": "ok"}, "finish_reason": None}]})
    cut = event.index(", ") + 1  # between two JSON tokens: the joining newline is whitespace there
    raw = f": ping\r\nevent: message\r\ndata: {event[:cut]}\r\ndata:{event[cut:]}\r\n\r\n".encode()
    delta = ChatStreamDecoder().feed(raw)
    assert delta is not None and delta.text == "ok"
    assert ChatStreamDecoder().feed(b": keepalive\r\n\r\n") is None


def test_usage_and_finish_arrive_without_text() -> None:
    decoder = ChatStreamDecoder()
    delta = decoder.feed(chunk(None, finish="length") + chunk(usage={"prompt_tokens": 12, "completion_tokens": 3}))
    assert delta is not None and delta.text == ""
    assert delta.finish_reason == "length" and delta.usage == TokenUsage(prompt_tokens=12, completion_tokens=3)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'data: {"error": {"message": "model overloaded"}}\n\n', "model overloaded"),
        (b"data: not json\n\n", "not JSON"),
        (b"data: [1, 2]\n\n", "not a JSON object"),
    ],
)
def test_an_error_or_garbage_in_the_stream_is_a_stream_error(raw: bytes, words: str) -> None:
    with pytest.raises(TierError) as caught:
        ChatStreamDecoder().feed(raw)
    assert caught.value.reason == "stream_error" and words in str(caught.value)


def test_nothing_after_done_is_read() -> None:
    decoder = ChatStreamDecoder()
    delta = decoder.feed(chunk("end") + b"data: [DONE]\n\n" + chunk("ghost"))
    assert delta is not None and delta.text == "end" and decoder.done


@given(st.text(), st.integers(min_value=1, max_value=10**9))
def test_token_frames_from_bytes_equal_the_model_framing_and_stay_one_data_line(text: str, event_id: int) -> None:
    fast = token_frame(text, event_id)
    modelled = TokenEvent(text=text).model_dump_json(exclude={"type"})
    assert fast == f"id: {event_id}\nevent: token\ndata: {modelled}\n\n".encode()
    assert frame(TokenEvent(text=text), event_id) == fast
    lines = fast.decode().split("\n")
    assert lines[:2] == [f"id: {event_id}", "event: token"] and lines[3:] == ["", ""]  # I6: one data line
    assert json.loads(lines[2].removeprefix("data: ")) == {"text": text}
