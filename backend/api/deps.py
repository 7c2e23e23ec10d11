"""Typed dependencies: routes receive lifespan resources and the caller, never module globals."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from backend.auth import Principal, decode_bearer
from backend.catalog import Catalog
from backend.chat.service import ChatService
from backend.client_ip import client_ip
from backend.credential_guard import CredentialGuard
from backend.ids import require_id
from backend.limits import RateLimiter
from backend.settings import Settings
from backend.storage.repository import Sessions
from backend.stream.running import RunningTurns
from backend.stream.stop_bus import StopBus
from backend.stream.stream_log import StreamLog
from backend.stream_slots import StreamSlots

# request.state carries the lifespan's State (a copy per request of the same objects). Routes take these as
# dependencies; the chat route, a plain ASGI one (api/chat.py), calls them directly.


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def chat_of(request: Request) -> ChatService:
    return request.state.chat


def sessions_of(request: Request) -> Sessions:
    return request.state.sessions


def limiter_of(request: Request) -> RateLimiter:
    return request.state.limiter


def slots_of(request: Request) -> StreamSlots:
    return request.state.slots


def running_of(request: Request) -> RunningTurns:
    return request.state.running


def stop_bus_of(request: Request) -> StopBus:
    return request.state.stop_bus


def stream_log_of(request: Request) -> StreamLog | None:
    """The resumable-stream log, None when this deployment keeps no streams (no Redis)."""
    return request.state.stream_log


async def catalog_of(request: Request) -> Catalog:
    """The lifespan's catalog, re-read when another process ingested; app.state's (site-only tests) or empty."""
    shared = getattr(request.state, "shared_catalog", None)
    if shared is not None:
        return await shared.current()
    catalog = getattr(request.app.state, "catalog", None)
    return catalog if isinstance(catalog, Catalog) else Catalog()


def credentials_of(request: Request) -> CredentialGuard:
    """The limiter every credential check goes through first (backend/credential_guard.py)."""
    guard = getattr(request.state, "credentials", None)
    if guard is None:  # an app without the lifespan's state (site-only tests): one guard per app, in process
        guard = getattr(request.app.state, "credentials", None)
        if guard is None:
            guard = request.app.state.credentials = CredentialGuard(request.app.state.settings)
    return guard


async def principal_of(request: Request) -> Principal | None:
    """The caller from a bearer JWT; None when anonymous. The check is rate-limited per address before the
    token is evaluated (a locked-out address gets 429 whatever it sends)."""
    header = request.headers.get("authorization")
    if header is None or not header.strip():
        return None
    auth = request.app.state.settings.auth
    return await credentials_of(request).check(client_ip_of(request), lambda: decode_bearer(header, auth))


async def owner_of(request: Request) -> str | None:
    """Whose conversations the caller may see: the signed-in user, or None for an anonymous visitor."""
    principal = await principal_of(request)
    return principal.user_id if principal else None


def client_ip_of(request: Request) -> str:
    settings: Settings = request.app.state.settings
    peer = request.client.host if request.client else None
    return client_ip(peer, request.headers, settings.limits.trusted_proxies)


# Ids in paths pass the one id gate (backend/ids.py) before anything looks them up: a malformed one is 404.
def conversation_id_of(conversation_id: str) -> str:
    return require_id(conversation_id, what="conversation")


def message_id_of(message_id: str) -> str:
    return require_id(message_id, what="message")


SettingsDep = Annotated[Settings, Depends(settings_of)]
ChatDep = Annotated[ChatService, Depends(chat_of)]
SessionsDep = Annotated[Sessions, Depends(sessions_of)]
LimiterDep = Annotated[RateLimiter, Depends(limiter_of)]
SlotsDep = Annotated[StreamSlots, Depends(slots_of)]
RunningDep = Annotated[RunningTurns, Depends(running_of)]
StopBusDep = Annotated[StopBus, Depends(stop_bus_of)]
StreamLogDep = Annotated[StreamLog | None, Depends(stream_log_of)]
CatalogDep = Annotated[Catalog, Depends(catalog_of)]
PrincipalDep = Annotated[Principal | None, Depends(principal_of)]
OwnerDep = Annotated[str | None, Depends(owner_of)]
ClientIpDep = Annotated[str, Depends(client_ip_of)]
ConversationIdDep = Annotated[str, Depends(conversation_id_of)]
MessageIdDep = Annotated[str, Depends(message_id_of)]
CredentialsDep = Annotated[CredentialGuard, Depends(credentials_of)]
