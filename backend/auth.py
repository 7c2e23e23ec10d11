"""Bearer JWT → Principal; no header means anonymous, anything doubtful is 401 (S2)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import jwt

from backend.errors import ErrorCode, LorechatError
from backend.settings import AuthSettings

log = logging.getLogger(__name__)

# Clock skew tolerated between the token issuer and this server.
LEEWAY_SECONDS = 5
_MAX_TOKEN_CHARS = 8192
_MAX_SUBJECT_CHARS = 255  # conversations.owner_id
# A subject is stored as the owner of conversations and used in cache keys: control characters (NUL cannot be
# stored in PostgreSQL) and lone surrogates (not encodable as UTF-8) make it unusable, so the token is refused
# rather than cleaned into a different user's subject (I4, S2).
_UNSTORABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str


def _unauthorized() -> LorechatError:
    # One message for every reason: which check failed is logged, not told to the caller.
    return LorechatError(ErrorCode.unauthorized, "Invalid or expired token")


def _key_for(alg: str, settings: AuthSettings) -> Any:
    # The key follows the algorithm family, so an RS256 public key can never be used as an HMAC secret.
    if alg.startswith("HS"):
        secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
        return secret or None
    return settings.jwt_public_key or None


def decode_bearer(authorization: str | None, settings: AuthSettings) -> Principal | None:
    """The caller from an `Authorization: Bearer <jwt>` header; None when the header is absent."""
    if authorization is None or not authorization.strip():
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > _MAX_TOKEN_CHARS:
        log.info("rejected token: malformed Authorization header")
        raise _unauthorized()
    try:
        alg = jwt.get_unverified_header(token).get("alg")
        # An empty or "none" algorithm is refused even if someone configured it.
        if not isinstance(alg, str) or alg.lower() == "none" or alg not in settings.jwt_algorithms:
            raise jwt.InvalidAlgorithmError(f"algorithm {alg!r} not allowed")
        key = _key_for(alg, settings)
        if key is None:
            raise jwt.InvalidKeyError(f"no key configured for {alg}")
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=settings.jwt_audience or None,
            issuer=settings.jwt_issuer or None,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "sub"]},
        )
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        log.info("rejected token: %s", type(exc).__name__)
        raise _unauthorized() from exc
    subject = claims.get("sub")
    if (
        not isinstance(subject, str)
        or not subject.strip()
        or len(subject) > _MAX_SUBJECT_CHARS
        or _UNSTORABLE.search(subject)
    ):
        log.info("rejected token: bad subject")
        raise _unauthorized()
    return Principal(user_id=subject)
