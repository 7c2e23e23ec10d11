"""An OpenAI-compatible chat stream read as raw SSE bytes: one `TextDelta` per network read, no typed chunks.

The SDK builds a pydantic `ChatCompletionChunk` for every token and walks several generator layers to do it,
which cost more CPU than passing the token on (BENCHMARKS.md, "Streaming at 1,000 streams"). Here the bytes of one read
are split into events, each event's JSON is parsed with orjson, and every piece of text found in that read becomes one
delta: tokens that arrived together travel together from here to the visitor's socket.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from backend.chat.tiers.base import TextDelta, TierError, TokenUsage

# One event's data may not grow past this (a token's event is a few hundred bytes): an upstream that never ends a
# line would otherwise grow the buffer without bound. chat/_token_pipe.c applies the same cap.
MAX_EVENT_BYTES = 1024 * 1024


class ChatStreamDecoder:
    """Feed it the stream's bytes as they arrive; it returns what they completed. Follows the SSE rules that
    matter here: LF or CRLF line ends, `data:` lines of one event joined by LF, a blank line ends the event,
    comments and other fields ignored, `[DONE]` ends the stream."""

    __slots__ = ("_data", "_partial", "done")

    def __init__(self) -> None:
        self._partial = b""  # an incomplete last line, kept until the rest of it arrives
        self._data: list[bytes] = []  # data lines of the event being read
        self.done = False

    def feed(self, chunk: bytes) -> TextDelta | None:
        """Everything the completed events in `chunk` (and before) said, merged into one delta; None if none."""
        if self._partial:
            chunk = self._partial + chunk
        end = chunk.rfind(b"\n")
        self._partial = chunk[end + 1 :]
        if len(self._partial) > MAX_EVENT_BYTES:
            raise TierError("stream_error", f"upstream sent an event over {MAX_EVENT_BYTES} bytes")
        if end < 0:
            return None
        texts: list[str] = []
        finish: str | None = None
        usage: TokenUsage | None = None
        for payload in self._events(chunk[:end]):
            if payload == b"[DONE]":
                self.done = True
                break
            text, event_finish, event_usage = _read_event(payload)
            if text:
                texts.append(text)
            finish = event_finish or finish
            usage = event_usage or usage
        if sum(map(len, self._data)) > MAX_EVENT_BYTES:
            raise TierError("stream_error", f"upstream sent an event over {MAX_EVENT_BYTES} bytes")
        if not texts and finish is None and usage is None:
            return None
        return TextDelta(text="".join(texts), finish_reason=finish, usage=usage)

    def hand_off(self) -> tuple[bytes, list[bytes]]:
        """The unfinished line and the data lines of the unfinished event, for a decoder that goes on from here
        (the native relay's); this one is left empty."""
        state = (self._partial, self._data)
        self._partial, self._data = b"", []
        return state

    def _events(self, lines_block: bytes) -> Iterator[bytes]:
        """The events that `lines_block` (whole lines, its last line end left off) completed."""
        for line in lines_block.split(b"\n"):
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:  # end of an event
                if self._data:
                    payload = b"\n".join(self._data)
                    self._data = []
                    yield payload
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
            # ":" comments, event:, id: and retry: lines carry nothing a chat completion needs.


def _read_event(payload: bytes) -> tuple[str, str | None, TokenUsage | None]:
    try:
        event: Any = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise TierError("stream_error", "upstream sent an event that is not JSON") from None
    if not isinstance(event, dict):
        raise TierError("stream_error", "upstream sent an event that is not a JSON object")
    if "error" in event:  # an error object sent inside the stream
        error = event["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise TierError("stream_error", f"upstream error in stream: {message}")
    text = ""
    finish = None
    choices = event.get("choices")
    if choices and isinstance(choices, list) and isinstance(choices[0], dict):
        choice = choices[0]
        delta = choice.get("delta")
        if isinstance(delta, dict):
            content = delta.get("content")
            if isinstance(content, str):
                text = content
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            finish = reason
    figures = event.get("usage")
    return text, finish, usage_from(figures) if isinstance(figures, dict) else None


def usage_from(figures: dict[str, Any]) -> TokenUsage:
    """A chunk's `usage` object."""
    return TokenUsage(
        prompt_tokens=int(figures.get("prompt_tokens") or 0),
        completion_tokens=int(figures.get("completion_tokens") or 0),
    )
