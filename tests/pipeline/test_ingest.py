"""Ingest end to end on the real embedder and a real Edge shard: idempotence, replacement, pruning, failures."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from backend.catalog import Catalog
from backend.grounding.sentences import SentenceVectors, sentence_texts
from backend.retrieval.embedder import Embedder
from backend.retrieval.search import Retriever
from backend.retrieval.stores.edge import EdgeStore
from backend.settings import ChunkingSettings, RetrievalSettings
from backend.storage import catalog_store
from pipeline.catalog_update import read_catalog
from pipeline.indexer import Indexer
from pipeline.ingest import IngestReport
from tests.backend.grounding.test_sentence_vectors import CountingEmbedder
from tests.conftest import DEMO_CONTENT, PG_URL, indexer
from tests.databases import throwaway_database

ARTICLE = """---
title: Salt and the Crumb
url: https://example.com/salt
published: 2024-05-01
---
# Salt

Salt tightens gluten. I use two percent of the flour weight, never more, because the zorblax effect
makes dough slack and grey when you overdo it.

## Timing

Add the salt after the autolyse so the flour hydrates first.
"""


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "content"
    creator = root / "ada"
    (creator / "notes").mkdir(parents=True)
    (creator / "creator.yaml").write_text("name: Ada Baker\nbio: Bakes.\n", encoding="utf-8")
    (creator / "salt.md").write_text(ARTICLE, encoding="utf-8")
    (creator / "notes" / "oven.txt").write_text("Oven notes\n\nPreheat the stone for an hour.\n", encoding="utf-8")
    (creator / "talk.srt").write_text(
        "1\n00:00:01,000 --> 00:00:04,000\nWelcome to the crust talk.\n\n"
        "2\n00:01:05,500 --> 00:01:09,000\nSteam in the first minutes keeps the crust soft so it can spring.\n",
        encoding="utf-8",
    )
    return root


@pytest.fixture
def index(tmp_path: Path, shared_embedder: Embedder) -> Retriever:
    store = EdgeStore(tmp_path / "index", hnsw_ef=128)
    retriever = Retriever(embedder=shared_embedder, store=store, settings=RetrievalSettings())
    yield retriever
    store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database every "host" of a test shares: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'shared' / 'lorechat.db'}"
        return
    with throwaway_database(PG_URL, prefix="lorechat_ingest") as url:
        yield url


def indexer_at(retriever: Retriever, data_dir: Path, database_url: str = "") -> Indexer:
    return indexer(
        retriever, data_dir, chunking=ChunkingSettings(size_tokens=64, overlap_tokens=8), database_url=database_url
    )


def run(paths: list[Path], retriever: Retriever, data_dir: Path, **options: object) -> IngestReport:
    return indexer_at(retriever, data_dir).ingest(paths, **options)


def catalog_in(retriever: Retriever, data_dir: Path, database_url: str = "") -> Catalog:
    writer = indexer_at(retriever, data_dir, database_url).catalog
    assert writer is not None
    return read_catalog(writer.database, data_dir)


def catalog_version(retriever: Retriever, data_dir: Path, database_url: str = "") -> int:
    writer = indexer_at(retriever, data_dir, database_url).catalog
    assert writer is not None
    return writer.database.run(catalog_store.catalog_version)


def test_second_run_writes_nothing(corpus: Path, index: Retriever, tmp_path: Path) -> None:
    first = run([corpus], index, tmp_path)
    assert (first.added, first.updated, first.unchanged, first.failed) == (3, 0, 0, [])
    assert first.chunks_written > 0
    version = catalog_version(index, tmp_path)

    second = run([corpus], index, tmp_path)

    assert second.as_json() == {"added": 0, "updated": 0, "unchanged": 3, "pruned": 0, "failed": []}
    assert second.chunks_written == 0
    assert catalog_version(index, tmp_path) == version  # the catalog was not rewritten: no replica reloads


def test_changed_document_replaces_every_old_chunk(corpus: Path, index: Retriever, tmp_path: Path) -> None:
    run([corpus], index, tmp_path)
    before = index.store.documents("ada")["ada/salt.md"].chunk_count
    (corpus / "ada" / "salt.md").write_text("---\ntitle: Salt\n---\nJust a pinch of salt.\n", encoding="utf-8")

    report = run([corpus], index, tmp_path)

    assert (report.added, report.updated, report.unchanged) == (0, 1, 2)
    after = index.store.documents("ada")["ada/salt.md"]
    assert after.chunk_count == 1 < before
    texts = [hit.text for hit in index.search("zorblax effect slack grey dough", creator="ada", k=20)]
    assert not any("zorblax" in text for text in texts), "a stale chunk of the old version survived"


def test_prune_removes_vanished_documents_only_when_asked(corpus: Path, index: Retriever, tmp_path: Path) -> None:
    run([corpus], index, tmp_path)
    (corpus / "ada" / "notes" / "oven.txt").unlink()

    kept = run([corpus], index, tmp_path)
    assert kept.pruned == 0
    assert "ada/notes/oven.txt" in index.store.documents("ada")

    pruned = run([corpus], index, tmp_path, prune=True)
    assert pruned.pruned == 1
    assert "ada/notes/oven.txt" not in index.store.documents("ada")
    assert "ada/notes/oven.txt" not in catalog_in(index, tmp_path).creators["ada"].documents


def test_prune_keeps_documents_whose_file_failed_to_parse(corpus: Path, index: Retriever, tmp_path: Path) -> None:
    run([corpus], index, tmp_path)
    (corpus / "ada" / "notes" / "oven.txt").write_bytes(b"\xff\xfe broken \x80 bytes")

    report = run([corpus], index, tmp_path, prune=True)

    assert [f.source for f in report.failed] == ["ada/notes/oven.txt"]
    assert report.pruned == 0
    assert "ada/notes/oven.txt" in index.store.documents("ada")


def test_bad_files_are_reported_and_the_rest_lands(corpus: Path, index: Retriever, tmp_path: Path) -> None:
    (corpus / "ada" / "empty.md").write_text("   \n", encoding="utf-8")
    (corpus / "ada" / "slides.key").write_bytes(b"PK\x03\x04")
    (corpus / "ada" / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")

    report = run([corpus], index, tmp_path)

    failed = {f.source: f.error for f in report.failed}
    assert set(failed) == {"ada/empty.md", "ada/slides.key", "ada/broken.pdf"}
    assert all(error and "Traceback" not in error for error in failed.values())
    assert report.added == 3


def test_dry_run_reports_without_writing(corpus: Path, index: Retriever, tmp_path: Path) -> None:
    report = run([corpus], index, tmp_path, dry_run=True)
    assert report.added == 3
    assert index.store.documents("ada") == {}
    assert catalog_in(index, tmp_path).creators == {}


def test_transcript_hits_carry_their_timestamps(corpus: Path, index: Retriever, tmp_path: Path) -> None:
    run([corpus], index, tmp_path)
    hits = index.search("steam keeps the crust soft", creator="ada", k=3, mode="bm25")
    transcript = [hit for hit in hits if hit.document_id == "ada/talk.srt"]
    assert transcript, hits
    assert transcript[0].start_seconds is not None and transcript[0].end_seconds is not None
    assert 0 <= transcript[0].start_seconds < transcript[0].end_seconds <= 69.0


def test_chunks_carry_their_sentence_vectors_into_the_answer_checks(
    corpus: Path, index: Retriever, tmp_path: Path, shared_embedder: Embedder
) -> None:
    # Ingest embeds each chunk's sentences once; a turn then finds them cached and embeds no source sentence.
    run([corpus], index, tmp_path)
    hits = index.search("how much salt", creator="ada", k=8, mode="hybrid")
    assert hits and all(hit.sentence_vectors for hit in hits)
    counting = CountingEmbedder(shared_embedder)
    vectors = SentenceVectors(counting)
    bare = vectors.seed(hits)
    assert [hit.chunk_id for hit in bare] == [hit.chunk_id for hit in hits]
    assert all(hit.sentence_vectors is None for hit in bare)  # not kept on the turn's hits
    texts = [text for hit in bare for text in sentence_texts(hit.text)]
    stored = vectors.encode(texts)
    assert not counting.embedded  # no model call: every source sentence came from the index
    live = shared_embedder.embed_documents(texts)
    assert float(np.min(np.sum(stored * live, axis=1))) > 0.999  # float16 storage keeps the cosines


def test_an_index_without_sentence_vectors_gets_them_on_the_next_ingest(
    corpus: Path, index: Retriever, tmp_path: Path
) -> None:
    off = ChunkingSettings(size_tokens=64, overlap_tokens=8, sentence_vectors=False)
    first = indexer(index, tmp_path, chunking=off).ingest([corpus])
    assert first.added == 3
    hits = index.search("how much salt", creator="ada", k=4, mode="hybrid")
    assert hits and all(hit.sentence_vectors is None for hit in hits)
    assert indexer(index, tmp_path, chunking=off).ingest([corpus]).unchanged == 3  # off: nothing to catch up
    # Switched on (the default): the documents stored without them are embedded again, once.
    upgraded = run([corpus], index, tmp_path)
    assert (upgraded.updated, upgraded.unchanged) == (3, 0)
    assert all(hit.sentence_vectors for hit in index.search("how much salt", creator="ada", k=4, mode="hybrid"))
    assert all(state.sentence_vectors for state in index.store.documents("ada").values())
    assert run([corpus], index, tmp_path).unchanged == 3


def test_delete_document_and_creator(corpus: Path, index: Retriever, tmp_path: Path) -> None:
    run([corpus], index, tmp_path)
    assert indexer_at(index, tmp_path).delete(document_id="ada/salt.md") > 0
    assert "ada/salt.md" not in index.store.documents("ada")
    assert "ada/salt.md" not in catalog_in(index, tmp_path).creators["ada"].documents
    assert indexer_at(index, tmp_path).delete(creator="ada") > 0
    assert index.store.documents("ada") == {}
    assert "ada" not in catalog_in(index, tmp_path).creators


def test_demo_corpus_ingests_cleanly(tmp_path: Path, index: Retriever) -> None:
    content = tmp_path / "demo"
    shutil.copytree(DEMO_CONTENT, content)
    report = run([content], index, tmp_path)
    assert report.failed == []
    catalog = catalog_in(index, tmp_path)
    assert len(catalog.creators) >= 3
    kinds = {doc.kind for entry in catalog.creators.values() for doc in entry.documents.values()}
    assert {"article", "page", "pdf", "transcript"} <= kinds


def test_ingest_writes_the_catalog_to_the_database(
    corpus: Path, index: Retriever, tmp_path: Path, database_url: str
) -> None:
    indexer_at(index, tmp_path, database_url).ingest([corpus])

    catalog = catalog_in(index, tmp_path / "another-host", database_url)  # read through an engine of its own
    assert catalog.creator("ada") is not None and catalog.creators["ada"].creator.name == "Ada Baker"
    documents = catalog.creators["ada"].documents
    assert sorted(documents) == ["ada/notes/oven.txt", "ada/salt.md", "ada/talk.srt"]
    assert (documents["ada/salt.md"].title, documents["ada/salt.md"].url) == (
        "Salt and the Crumb",
        "https://example.com/salt",
    )
    assert documents["ada/talk.srt"].duration_seconds == 69.0
    assert not (tmp_path / "catalog.json").exists()
    version = catalog_version(index, tmp_path, database_url)
    indexer_at(index, tmp_path, database_url).ingest([corpus])
    assert catalog_version(index, tmp_path, database_url) == version  # unchanged: nothing written

    (corpus / "ada" / "salt.md").unlink()
    indexer_at(index, tmp_path, database_url).ingest([corpus], prune=True)
    assert sorted(catalog_in(index, tmp_path / "another-host", database_url).creators["ada"].documents) == [
        "ada/notes/oven.txt",
        "ada/talk.srt",
    ]


def test_an_install_with_a_legacy_catalog_keeps_its_creators(corpus: Path, index: Retriever, tmp_path: Path) -> None:
    legacy = {"creator": {"name": "Bea Miller", "bio": "Mills.", "personality": "", "phrases": [], "links": []}}
    (tmp_path / "catalog.json").write_text(json.dumps({"creators": {"bea": {**legacy, "documents": []}}}))

    run([corpus], index, tmp_path)

    assert sorted(catalog_in(index, tmp_path).creators) == ["ada", "bea"]
