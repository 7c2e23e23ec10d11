"""The native tap (chat/_token_pipe.c) against the Python code it replaces: the same SSE decoding as
`ChatStreamDecoder`, the same token frames as `events.token_frame` inside uvicorn's chunked framing, and each reason
to stop writing handed back to Python. The socket ends are real classes with the attributes uvicorn's have."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.chat import _token_pipe as pipe
from backend.chat.relay_core import dense_gap, is_dense
from backend.chat.tiers.base import TierError
from backend.chat.tiers.sse_deltas import MAX_EVENT_BYTES, ChatStreamDecoder
from backend.stream.events import token_frame
from backend.stream.stream_log import EXPIRE, KEY_LENGTH, PLAIN, StreamLog, read_events
from tests.backend.chat.test_stream_bytes import chunk

KEY = "lorechat:events:m-1"
KEY_HEAD = KEY_LENGTH.pack(len(KEY)) + KEY.encode()


@dataclass
class Transport:
    """The visitor's socket: what was written to it, in order."""

    writes: list[bytes] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        self.writes.append(data)


@dataclass
class Flow:
    write_paused: bool = False


@dataclass
class Cycle:
    """The attributes of uvicorn's RequestResponseCycle that the tap reads."""

    transport: Transport = field(default_factory=Transport)
    flow: Flow = field(default_factory=Flow)
    disconnected: bool = False


@dataclass
class Control:
    reason: str | None = None
    since: float = 0.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 1.0  # a second between writes: never dense, unless a test says so
        return self.now


@dataclass
class Piped:
    tap: Any
    cycle: Cycle
    control: Control
    kept: list[bytes] = field(default_factory=list)  # what the tap handed to the connection's buffer
    events: list[tuple[int, Any, Any]] = field(default_factory=list)
    log: bytearray = field(default_factory=bytearray)  # the resume log's write buffer (stream_log.StreamLog's)
    wakes: list[int] = field(default_factory=list)  # the buffer's size each time the tap woke the flusher

    @property
    def logged(self) -> list[tuple[int, bytes]]:
        return [(event_id, body) for _key, event_id, _flag, body in read_events(self.log)]

    def frames(self) -> list[bytes]:
        """The written token frames, out of their chunk framing (which is checked on the way)."""
        frames = []
        for data in self.cycle.transport.writes:
            size, _, rest = data.partition(b"\r\n")
            assert rest.endswith(b"\r\n") and int(size, 16) == len(rest) - 2, data
            frames.append(rest[:-2])
        return frames


def piped(
    *,
    window: float = 0.0,
    clock: Any = None,
    last: float = 0.0,
    log: bool = False,
    partial: bytes = b"",
    data_lines: list[bytes] | None = None,
    max_chars: int = 0,
    log_limit: int = 4096,
    log_refresh: float = 1000.0,
) -> Piped:
    kept: list[bytes] = []
    tap = pipe.Tap(kept.append)
    result = Piped(tap=tap, cycle=Cycle(), control=Control(), kept=kept)
    tap.pipe(
        partial=partial,
        data_lines=data_lines or [],
        transport=result.cycle.transport,
        cycle=result.cycle,
        control=result.control,
        clock=clock or Clock(),
        log=(result.log, KEY_HEAD, lambda: result.wakes.append(len(result.log)), log_limit, log_refresh)
        if log
        else None,
        on_event=lambda kind, a, b: result.events.append((kind, a, b)),
        next_id=2,
        dense_gap=dense_gap(window),
        last=last,
        max_event=MAX_EVENT_BYTES,
        max_chars=max_chars,
    )
    return result


events = st.lists(
    st.one_of(
        st.tuples(st.just("text"), st.text(min_size=1)),
        st.tuples(st.just("finish"), st.sampled_from(["stop", "length"])),
        st.tuples(st.just("comment"), st.just(b": keepalive\r\n\r\n")),
    ),
    max_size=12,
)


def render(script: list[tuple[str, Any]], crlf: bool) -> bytes:
    raw = b""
    for kind, value in script:
        if kind == "text":
            raw += chunk(value)
        elif kind == "finish":
            raw += chunk(None, finish=value)
        else:
            raw += value
    raw += b"data: [DONE]\n\n"
    return raw.replace(b"\n", b"\r\n") if crlf else raw


@settings(max_examples=200, deadline=None)
@given(events, st.lists(st.integers(min_value=1, max_value=400), max_size=8), st.booleans())
def test_the_tap_decodes_and_frames_as_the_python_relay_does(script: list[Any], cuts: list[int], crlf: bool) -> None:
    raw = render(script, crlf)
    reads, at = [], 0
    for cut in sorted(cuts):
        if at < cut < len(raw):
            reads.append(raw[at:cut])
            at = cut
    reads.append(raw[at:])

    decoder, expected, next_id = ChatStreamDecoder(), [], 2
    for data in reads:
        delta = decoder.feed(data)
        if delta is not None and delta.text:
            expected.append(token_frame(delta.text, next_id))
            next_id += 1
        if decoder.done:
            break

    native = piped(log=True)
    for data in reads:
        native.tap.on_body(data)
    assert native.frames() == expected  # one frame per read that completed text, the same bytes
    assert [body for _, body in native.logged] == expected and native.tap.next_id == next_id
    texts = "".join(value for kind, value in script if kind == "text")
    assert native.tap.take_text() == texts and (native.control.since > 0) == bool(texts)
    kinds = [kind for kind, _, _ in native.events]
    assert kinds.count(pipe.DONE) == 1 and kinds[-1] == pipe.DONE
    finishes = [a for kind, a, _ in native.events if kind == pipe.META]
    assert (finishes[-1] if finishes else None) == next((v for k, v in reversed(script) if k == "finish"), None)


def test_it_goes_on_from_where_the_python_decoder_stopped() -> None:
    event = chunk("Salt")
    decoder = ChatStreamDecoder()
    assert decoder.feed(event[:9]) is None
    partial, data_lines = decoder.hand_off()
    native = piped(partial=partial, data_lines=data_lines)
    native.tap.on_body(event[9:])
    assert native.frames() == [token_frame("Salt", 2)]


@pytest.mark.parametrize(
    "raw",
    [
        b'data: {"error": {"message": "model overloaded"}}\n\n',
        b"data: not json\n\n",
        b"data: [1, 2]\n\n",
        b"data: " + b"x" * (MAX_EVENT_BYTES + 1),
    ],
)
def test_a_broken_stream_is_reported_with_the_python_decoders_message_and_nothing_of_it_written(raw: bytes) -> None:
    with pytest.raises(TierError) as caught:
        ChatStreamDecoder().feed(raw)
    native = piped()
    native.tap.on_body(chunk("before") + raw)
    assert native.frames() == [] and native.tap.held
    assert native.events == [(pipe.ERROR, str(caught.value), None)]


def test_usage_goes_to_python_as_the_upstream_sent_it() -> None:
    native = piped()
    native.tap.on_body(chunk(None, finish="stop", usage={"prompt_tokens": 12, "completion_tokens": 3}))
    assert native.events == [(pipe.META, "stop", {"prompt_tokens": 12, "completion_tokens": 3})]
    assert native.frames() == []


def test_a_full_socket_hands_the_frame_to_python_and_holds() -> None:
    native = piped(log=True)
    native.cycle.flow.write_paused = True
    native.tap.on_body(chunk("Salt"))
    assert native.frames() == [] and native.tap.held
    assert native.events == [(pipe.FULL, token_frame("Salt", 2), "Salt")]
    assert native.logged == [(2, token_frame("Salt", 2))]  # logged once, by the tap
    native.tap.on_body(chunk(" tightens"))  # held: kept for Python, not written
    assert native.kept == [chunk(" tightens")] and native.tap.take_text() == ""


def test_the_tap_logs_each_frame_as_the_stream_log_encodes_it_bounded_and_wakes_its_flusher_once_a_round() -> None:
    native = piped(log=True, log_limit=3, log_refresh=10.0)
    for text in ("Salt", " tightens", " gluten"):  # events 2, 3 and 4; the log keeps up to 3
        native.tap.on_body(chunk(text))
    assert len(native.frames()) == 3 and len(native.wakes) == 1  # the first event woke the flusher
    unused = aioredis.Redis()  # the log's writing side runs no command
    stream_log = StreamLog(unused, reader=unused, ttl_seconds=30, max_events=3, timeout_seconds=0.1)
    turn = stream_log.open("c-1", "m-1")
    assert turn.head == KEY_HEAD
    for event_id, text in ((2, "Salt"), (3, " tightens"), (4, " gluten")):
        turn.append(event_id, token_frame(text, event_id))
    python_side = turn.native()[0]
    assert bytes(native.log) == bytes(python_side)  # byte for byte, flags included
    assert [(key, event_id, flag) for key, event_id, flag, _ in read_events(native.log)] == [
        (KEY, 2, EXPIRE),  # the first event (re)sets the key's expiry, the next one within the period does not
        (KEY, 3, PLAIN),
    ]
    native.log.clear()  # the flusher took the round
    native.tap.on_body(chunk(" gently"))  # event 5: past the bound, not kept
    assert native.logged == [] and len(native.wakes) == 1


def test_a_long_answer_refreshes_its_keys_expiry_and_wakes_the_flusher_each_round() -> None:
    native = piped(log=True, log_refresh=2.5)  # the clock moves 1 s a write
    for round_ in range(4):
        native.tap.on_body(chunk(f" word{round_}"))
        native.log.clear()
    assert len(native.wakes) == 4
    native = piped(log=True, log_refresh=2.5)
    for round_ in range(6):
        native.tap.on_body(chunk(f" word{round_}"))
    flags = [flag for _key, _id, flag, _body in read_events(native.log)]
    assert flags == [EXPIRE, PLAIN, PLAIN, EXPIRE, PLAIN, PLAIN]  # clock 101 (last 0), 102, 103, 104 > 101 + 2.5, …


def test_a_cancelled_turn_writes_nothing_more() -> None:
    native = piped()
    native.control.reason = "stopped"
    native.tap.on_body(chunk("Salt"))
    assert native.frames() == [] and native.events == [(pipe.CANCELLED, None, None)] and native.tap.held


def test_dense_pieces_hold_for_a_window_and_a_detached_visitor_gets_nothing() -> None:
    native = piped(window=5.0)  # the clock moves 1 s a write: dense for a 5 s window (the first write is not)
    native.tap.on_body(chunk("Salt"))
    native.tap.on_body(chunk(" tightens"))
    assert native.frames() == [token_frame("Salt", 2), token_frame(" tightens", 3)]
    assert native.events == [(pipe.DENSE, None, None)] and native.tap.held
    native.tap.release()
    native.tap.detach()
    native.tap.on_body(chunk(" gluten"))
    assert len(native.frames()) == 2 and native.tap.take_text() == "Salt tightens gluten"  # counted: logged


@settings(max_examples=300, deadline=None)
@given(
    st.floats(min_value=0.0, max_value=0.2, allow_nan=False),
    st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    st.floats(min_value=1.0, max_value=1e6, allow_nan=False),
)
def test_the_tap_finds_pieces_dense_by_the_one_coalescing_rule(window: float, gap: float, start: float) -> None:
    # relay_core.is_dense is the rule; the tap is given dense_gap(window) and must agree with it at every gap.
    native = piped(window=window, clock=lambda: start + gap, last=start)
    native.tap.on_body(chunk("Salt"))
    dense = (pipe.DENSE, None, None) in native.events
    assert dense == is_dense(start, start + gap, window), (window, gap, start)


def test_a_visitor_uvicorn_knows_is_gone_is_written_nothing_as_uvicorns_send_would() -> None:
    native = piped()
    native.cycle.disconnected = True
    native.tap.on_body(chunk("Salt"))
    assert native.frames() == [] and native.tap.take_text() == "Salt"


def test_a_stopped_tap_hands_every_byte_back() -> None:
    native = piped()
    native.tap.stop()
    native.tap.on_body(chunk("Salt"))
    assert native.kept == [chunk("Salt")] and native.frames() == [] and native.tap.take_text() == ""


def test_the_piece_that_passes_the_cap_is_cut_there_and_nothing_follows() -> None:
    native = piped(max_chars=10)
    native.tap.on_body(chunk("Salt"))
    native.tap.on_body(chunk(" tightens gluten"))
    assert native.frames() == [token_frame("Salt", 2), token_frame(" tight", 3)]
    assert native.events == [(pipe.LIMIT, None, None)] and native.tap.held
    assert native.tap.take_text() == "Salt tight"
