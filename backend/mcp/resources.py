"""The MCP resources: each creator's profile and document list, as JSON, for the creators the caller may see.

`lorechat://creators/{slug}` is the profile (name, bio, links, counts) and `lorechat://creators/{slug}/documents`
the documents (title, kind, URL, published date, length). A creator the caller may not see (outside a site key's
creators) reads as not found, exactly like one that does not exist, and is not listed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mcp_types import INVALID_PARAMS, Resource, ResourceTemplate
from starlette.requests import Request

from backend.api.deps import catalog_of
from backend.catalog import CatalogCreator
from backend.mcp.auth import Caller
from backend.stages import format_timestamp

SCHEME = "lorechat://creators/"
_URI = re.compile(r"lorechat://creators/([a-z0-9][a-z0-9-]{0,63})(/documents)?")
JSON = "application/json"

TEMPLATES = [
    ResourceTemplate(
        uri_template=SCHEME + "{slug}",
        name="creator",
        description="A creator's profile: name, bio, links and how much content the index holds.",
        mime_type=JSON,
    ),
    ResourceTemplate(
        uri_template=SCHEME + "{slug}/documents",
        name="creator-documents",
        description="A creator's documents: title, kind, URL, published date, length.",
        mime_type=JSON,
    ),
]


class ResourceNotFound(Exception):
    code = INVALID_PARAMS  # the spec's code for an unknown resource

    def __init__(self, uri: str) -> None:
        super().__init__(f"Resource not found: {uri[:200]}")
        self.uri = uri[:200]


async def list_resources(request: Request, caller: Caller) -> list[Resource]:
    catalog = await catalog_of(request)
    found: list[Resource] = []
    for slug, entry in sorted(catalog.creators.items()):
        if not caller.may_see(slug):
            continue
        name = entry.creator.name
        found.append(
            Resource(uri=SCHEME + slug, name=f"{slug}", title=name, description=f"{name}: profile", mime_type=JSON)
        )
        found.append(
            Resource(
                uri=f"{SCHEME}{slug}/documents",
                name=f"{slug}-documents",
                title=f"{name}: documents",
                description=f"The {len(entry.documents)} documents of {name}",
                mime_type=JSON,
            )
        )
    return found


async def read_resource(request: Request, caller: Caller, uri: str) -> str:
    """The resource's JSON text; ResourceNotFound for anything unknown or not the caller's to see."""
    match = _URI.fullmatch(uri)
    entry = None
    if match is not None and caller.may_see(match[1]):
        entry = (await catalog_of(request)).creators.get(match[1])
    if match is None or entry is None:
        raise ResourceNotFound(uri)
    body = _documents(entry) if match[2] else _profile(entry)
    return json.dumps(body, ensure_ascii=False)


def _profile(entry: CatalogCreator) -> dict[str, Any]:
    creator = entry.creator
    return {
        "slug": creator.slug,
        "name": creator.name,
        "bio": creator.bio,
        "links": list(creator.links),
        "documents": len(entry.documents),
        "chunks": sum(doc.chunks for doc in entry.documents.values()),
    }


def _documents(entry: CatalogCreator) -> dict[str, Any]:
    documents = []
    for document in sorted(entry.documents.values(), key=lambda doc: (doc.title, doc.document_id)):
        item: dict[str, Any] = {
            "document_id": document.document_id,
            "title": document.title,
            "kind": document.kind,
            "url": document.url,
            "published": document.published,
            "chunks": document.chunks,
        }
        if document.duration_seconds is not None:
            item["duration"] = format_timestamp(document.duration_seconds)
        documents.append(item)
    return {"creator": entry.creator.slug, "documents": documents}
