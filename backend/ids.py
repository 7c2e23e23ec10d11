"""The one gate every id passes before it is looked up, from a route's path or body, a cursor or a CLI argument.

Ids are what `new_id` makes (URL-safe base64). Anything else (a NUL, a surrogate from a mis-decoded argument, a
5,000-character string) is "not found" before it can reach the database, whichever database it is (I4): the
same 404 a well-formed but unknown id gets, so the gate is no existence oracle either (S3).
"""

from __future__ import annotations

import re
import secrets

from backend.errors import ErrorCode, LorechatError

ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
# Names a curator chooses (creators on the chat route, sites): lowercase letters, digits and hyphens.
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
_SLUG = re.compile(SLUG_PATTERN[1:-1])


def new_id() -> str:
    """22 URL-safe characters (128 random bits): ids are unguessable (S3). Never a leading "-" or "_": an id is
    typed as a command-line argument (`lorechat answers edit ID`), where one opening with "-" reads as an option
    (one id in 64 did)."""
    while True:
        value = secrets.token_urlsafe(16)
        if value[0].isalnum():
            return value


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def is_slug(value: object) -> bool:
    return isinstance(value, str) and _SLUG.fullmatch(value) is not None


def require_id(value: object, *, what: str) -> str:
    """`value` when it is an id; otherwise the not-found error an unknown `what` gets."""
    if not is_valid_id(value):
        raise LorechatError(ErrorCode.not_found, f"No such {what}")
    assert isinstance(value, str)
    return value
