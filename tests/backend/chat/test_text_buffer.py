"""The streamed answer's buffer: the same text as joining every piece, held as a few strings, not thousands."""

from __future__ import annotations

from backend.chat.text_buffer import TextBuffer


def test_a_long_answer_is_held_joined_and_reads_back_whole() -> None:
    buffer = TextBuffer()
    assert not buffer and str(buffer) == ""
    pieces = [f" token{n}" for n in range(2_200)]
    for n, piece in enumerate(pieces, start=1):
        buffer.append(piece)
        assert len(buffer._parts) <= 33  # never one str per token
        if n in (1, 33, 34, 1_000):
            assert str(buffer) == "".join(pieces[:n])  # readable mid-stream, and appending goes on after
    assert buffer and str(buffer) == "".join(pieces)
    assert len(buffer._parts) == 1
