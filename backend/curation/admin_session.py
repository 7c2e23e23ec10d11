"""The curator dashboard's login: a signed, expiring session cookie and per-session CSRF tokens, all derived
from the admin token (changing the token signs everyone out). Nothing is stored server-side, so every API
process sharing the token accepts the same session."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from backend.settings import AuthSettings

COOKIE = "lorechat_admin"


def _key(admin_token: str) -> bytes:
    return hmac.new(admin_token.encode(), b"lorechat admin session v1", hashlib.sha256).digest()


def _sign(admin_token: str, message: str) -> str:
    return hmac.new(_key(admin_token), message.encode(), hashlib.sha256).hexdigest()


def admin_token(settings: AuthSettings) -> str:
    """The configured admin token ("" when curator operations over HTTP are disabled)."""
    return settings.admin_token.get_secret_value() if settings.admin_token else ""


def token_matches(given: str, admin_token: str) -> bool:
    return bool(admin_token) and hmac.compare_digest(given.encode(), admin_token.encode())


def new_session(admin_token: str, *, lifetime_seconds: float, now: float | None = None) -> str:
    """`expires.nonce.signature`: readable by nobody but a holder of the token's key, useless after `expires`."""
    expires = int((now or time.time()) + lifetime_seconds)
    body = f"{expires}.{secrets.token_urlsafe(16)}"
    return f"{body}.{_sign(admin_token, 'session:' + body)}"


def valid_session(cookie: str | None, admin_token: str, *, now: float | None = None) -> bool:
    if not cookie or not admin_token or len(cookie) > 200:
        return False
    body, _, signature = cookie.rpartition(".")
    expires, _, nonce = body.partition(".")
    if not expires.isdigit() or not nonce:
        return False
    if not hmac.compare_digest(signature.encode(), _sign(admin_token, "session:" + body).encode()):
        return False
    return int(expires) > (now or time.time())


def csrf_token(cookie: str, admin_token: str) -> str:
    """The token every dashboard form carries: bound to this session, so another page cannot know it."""
    return _sign(admin_token, "csrf:" + cookie)


def csrf_matches(given: str | None, cookie: str, admin_token: str) -> bool:
    return bool(given) and hmac.compare_digest((given or "").encode(), csrf_token(cookie, admin_token).encode())
