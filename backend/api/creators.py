"""GET /api/v1/creators: who can be asked, with what the index holds for each."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from backend.api.deps import CatalogDep

router = APIRouter(tags=["creators"])


class CreatorOut(BaseModel):
    slug: str
    name: str
    bio: str
    documents: int
    chunks: int


@router.get("/api/v1/creators", response_model=list[CreatorOut])
async def list_creators(catalog: CatalogDep) -> list[CreatorOut]:
    return [
        CreatorOut(
            slug=slug,
            name=entry.creator.name,
            bio=entry.creator.bio,
            documents=len(entry.documents),
            chunks=sum(doc.chunks for doc in entry.documents.values()),
        )
        for slug, entry in sorted(catalog.creators.items())
    ]
