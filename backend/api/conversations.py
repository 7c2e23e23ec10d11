"""The caller's conversations: list, read, soft-delete, and stop a running answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from backend.api.deps import ConversationIdDep, OwnerDep, PrincipalDep, SessionsDep, StopBusDep
from backend.errors import ErrorCode, LorechatError
from backend.storage import repository

router = APIRouter(prefix="/api/v1/conversations", tags=["conversations"])

_NOT_FOUND = "Conversation not found"


class MessageOut(BaseModel):
    id: str
    role: str
    content: str
    status: str
    cascade_tier: str | None
    sources: list[dict[str, Any]]
    usage: dict[str, Any] | None
    search_query: str
    created_at: datetime
    finished_at: datetime | None
    # Answers: the claim check per sentence (as in the `done` event) and whether the sources covered the question.
    citations: list[dict[str, Any]] | None = None
    unsupported_claims: int = 0
    unanswered: bool = False


class ConversationOut(BaseModel):
    id: str
    title: str
    creator: str | None
    created_at: datetime
    updated_at: datetime


class ConversationDetailOut(ConversationOut):
    messages: list[MessageOut]


class ConversationPage(BaseModel):
    items: list[ConversationOut]
    next_cursor: str | None


class StopOut(BaseModel):
    stopped: bool


@router.get("", response_model=ConversationPage)
async def list_conversations(
    sessions: SessionsDep,
    principal: PrincipalDep,
    limit: int = Query(20, ge=1, le=repository.MAX_PAGE),
    cursor: str | None = Query(None, max_length=200),
) -> ConversationPage:
    if principal is None:
        # Anonymous conversations have no owner to list them by: they are reachable only by their id.
        raise LorechatError(ErrorCode.unauthorized, "Sign in to list your conversations")
    page = await repository.list_conversations(sessions, owner_id=principal.user_id, limit=limit, cursor=cursor)
    return ConversationPage(
        items=[ConversationOut.model_validate(item, from_attributes=True) for item in page.items],
        next_cursor=page.next_cursor,
    )


@router.get("/{conversation_id}", response_model=ConversationDetailOut)
async def get_conversation(conversation_id: ConversationIdDep, sessions: SessionsDep, owner: OwnerDep) -> Any:
    detail = await repository.get_conversation(sessions, conversation_id=conversation_id, owner_id=owner)
    if detail is None:
        raise LorechatError(ErrorCode.not_found, _NOT_FOUND)
    return ConversationDetailOut.model_validate(detail, from_attributes=True)


@router.delete("/{conversation_id}", status_code=204)
async def delete_conversation(conversation_id: ConversationIdDep, sessions: SessionsDep, owner: OwnerDep) -> Response:
    deleted = await repository.delete_conversation(sessions, conversation_id=conversation_id, owner_id=owner)
    if not deleted:
        raise LorechatError(ErrorCode.not_found, _NOT_FOUND)
    return Response(status_code=204)


@router.post("/{conversation_id}/stop", response_model=StopOut)
async def stop(
    conversation_id: ConversationIdDep, sessions: SessionsDep, owner: OwnerDep, stops: StopBusDep
) -> StopOut:
    """Cancel the answer being generated, on whichever replica streams it; the stream ends with `done`
    (finish_reason "stopped")."""
    visible = await repository.get_conversation(sessions, conversation_id=conversation_id, owner_id=owner)
    if visible is None:
        raise LorechatError(ErrorCode.not_found, _NOT_FOUND)
    return StopOut(stopped=await stops.stop(conversation_id))
