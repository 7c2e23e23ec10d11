"""Keyset-pagination cursors for conversation listings: made here, and checked here before any query."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime

from backend.errors import ErrorCode, LorechatError
from backend.storage.models import is_valid_id


def encode_cursor(updated_at: datetime, conversation_id: str) -> str:
    """The position after (updated_at, id) in a listing, opaque to clients."""
    raw = json.dumps([updated_at.isoformat(), conversation_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """A cursor from outside: anything `encode_cursor` could not have made is a 422, never a query (I4)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, conversation_id = json.loads(raw)
        updated_at = datetime.fromisoformat(stamp)
        if updated_at.tzinfo is None or not is_valid_id(conversation_id):
            raise ValueError("bad cursor")
        # Converted here, not at bind time: a time past year 9999 in UTC must be a 422, not a 500 (I4).
        return updated_at.astimezone(UTC), conversation_id
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
        raise LorechatError(ErrorCode.invalid_input, "Invalid cursor", extra={"field": "cursor"}) from exc
