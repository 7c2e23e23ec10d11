"""GET /api/v1/starters: the questions the widget offers before the first one (backend/curation/answers.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from backend.curation.answers import CuratedAnswers
from backend.ids import SLUG_PATTERN

router = APIRouter(tags=["curation"])


class StartersOut(BaseModel):
    questions: list[str]
    # curator: set by a curator for this site and/or creator; asked: the most asked questions answered well
    source: str


@router.get("/api/v1/starters", response_model=StartersOut)
async def starters(
    request: Request,
    creator: Annotated[str | None, Query(pattern=SLUG_PATTERN, description="The creator the widget asks.")] = None,
    site: Annotated[str | None, Query(pattern=SLUG_PATTERN, description="The site embedding the widget.")] = None,
) -> StartersOut:
    curated: CuratedAnswers = request.state.curated
    questions, source = await curated.starters(creator=creator, site=site)
    return StartersOut(questions=questions, source=source)
