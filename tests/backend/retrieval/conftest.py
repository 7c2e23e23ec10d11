"""Shared fixtures: one real embedder per test session, a small multi-creator corpus, and both store adapters (the
server adapter in qdrant-client's local mode, and over HTTP against the Qdrant server double, tests/fakes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.retrieval.embedder import Embedder, get_embedder
from backend.retrieval.search import Retriever
from backend.retrieval.stores.edge import EdgeStore
from backend.retrieval.stores.protocol import Store
from backend.retrieval.stores.server import ServerStore
from backend.settings import EmbeddingSettings, RetrievalSettings
from backend.stages import Chunk, EmbeddedChunk


def make_chunk(
    creator: str,
    document_id: str,
    position: int,
    text: str,
    *,
    title: str,
    heading: str = "",
    document_hash: str = "hash-v1",
) -> Chunk:
    return Chunk(
        creator=creator,
        document_id=document_id,
        source=document_id.split("/", 1)[-1],
        title=title,
        url=f"https://example.com/{document_id}",
        position=position,
        text=text,
        document_hash=document_hash,
        heading=heading,
    )


# Three creators on unrelated topics; "rival" holds a chunk about sourdough proofing on purpose, the
# best possible match for the baker's canary queries, so tenant isolation is tested where it is hardest.
CORPUS: tuple[Chunk, ...] = (
    make_chunk(
        "baker",
        "baker/sourdough.md",
        0,
        "Proof the sourdough overnight in the fridge; a cold retard of 12 to 16 hours builds flavour.",
        title="Sourdough basics",
        heading="Proofing",
    ),
    make_chunk(
        "baker",
        "baker/sourdough.md",
        1,
        "Bake at 250°C in a preheated Dutch oven, lid on for 20 minutes, then lid off until deep brown.",
        title="Sourdough basics",
        heading="Baking",
    ),
    make_chunk(
        "baker",
        "baker/starter.md",
        0,
        "Feed the starter equal weights of flour and water every day until it doubles in four hours.",
        title="Keeping a starter alive",
    ),
    make_chunk(
        "baker",
        "baker/baguette.md",
        0,
        "Baguettes need a steamy oven: pour boiling water into a tray on the bottom rack.",
        title="Baguettes at home",
        heading="Steam",
    ),
    make_chunk(
        "astro",
        "astro/telescope.md",
        0,
        "A Dobsonian telescope gives the most aperture per euro for visual observing of galaxies.",
        title="Choosing a first telescope",
    ),
    make_chunk(
        "astro",
        "astro/telescope.md",
        1,
        "Collimate the mirrors before each session; a star test shows whether the optics are aligned.",
        title="Choosing a first telescope",
        heading="Maintenance",
    ),
    make_chunk(
        "astro",
        "astro/moon.md",
        0,
        "The terminator line on the Moon is where craters cast the longest shadows and look sharpest.",
        title="Observing the Moon",
    ),
    make_chunk(
        "rival",
        "rival/secret.md",
        0,
        "Rival secret: proof the sourdough overnight in the fridge with a cold retard of 12 to 16 hours.",
        title="Sourdough basics",
        heading="Proofing",
        document_hash="rival-hash",
    ),
    make_chunk(
        "rival",
        "rival/zebra.md",
        0,
        "Zebra quartz telescope canary phrase that only the rival creator ever wrote.",
        title="Canary",
    ),
)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return get_embedder(EmbeddingSettings())


@pytest.fixture(scope="session")
def embedded_corpus(embedder: Embedder) -> list[EmbeddedChunk]:
    scratch = ServerStore(":memory:", None, "scratch", hnsw_ef=64, timeout=5)
    try:
        retriever = Retriever(embedder=embedder, store=scratch, settings=RetrievalSettings())
        return retriever.embed_chunks(CORPUS)
    finally:
        scratch.close()


# "server": qdrant-client's local mode; "http": the same adapter over HTTP, against the Qdrant server double.
ADAPTERS = ("edge", "server", "http")


def open_adapter(kind: str, tmp_path: Path, request: pytest.FixtureRequest | None = None) -> Store:
    """`request` (the test's) starts the test's Qdrant double for kind "http"."""
    if kind == "edge":
        return EdgeStore(tmp_path / "index", hnsw_ef=128)
    if kind == "http":
        assert request is not None, "the http adapter needs the test's request to start the Qdrant double"
        url = request.getfixturevalue("qdrant_server").url
        return ServerStore(url, None, "lorechat-test", hnsw_ef=128, timeout=5)
    return ServerStore(":memory:", None, "lorechat-test", hnsw_ef=128, timeout=5)


@pytest.fixture(params=ADAPTERS)
def store(request: pytest.FixtureRequest, tmp_path: Path, embedder: Embedder) -> Iterator[Store]:
    """An empty collection on any adapter, built for the session embedder."""
    opened = open_adapter(request.param, tmp_path, request)
    opened.ensure_collection(dense_size=embedder.dimension, embedder_id=embedder.embedder_id)
    yield opened
    opened.close()


@pytest.fixture
def loaded_store(store: Store, embedded_corpus: list[EmbeddedChunk]) -> Store:
    store.upsert(embedded_corpus)
    return store


@pytest.fixture
def retriever(loaded_store: Store, embedder: Embedder) -> Retriever:
    return Retriever(embedder=embedder, store=loaded_store, settings=RetrievalSettings(k=3))
