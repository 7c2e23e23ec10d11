"""The demo corpus: every file parses, page chrome is dropped, and each canary stays with its creator."""

from __future__ import annotations

import pytest

from backend.stages import Document
from pipeline.sources import content_files, parse_file
from tests.conftest import DEMO_CONTENT


@pytest.fixture(scope="module")
def demo_documents() -> dict[str, list[Document]]:
    """Every demo document, parsed once for the module."""
    docs: dict[str, list[Document]] = {}
    for creator_root in sorted(p for p in DEMO_CONTENT.iterdir() if p.is_dir()):
        for path in content_files(creator_root):
            result = parse_file(path, creator=creator_root.name, creator_root=creator_root)
            assert result.errors == [], result.errors
            docs.setdefault(creator_root.name, []).extend(result.documents)
    return docs


def test_demo_corpus_parses_cleanly(demo_documents: dict[str, list[Document]]) -> None:
    docs = demo_documents
    assert sorted(docs) == ["hazel-marsh", "ines-calloway", "tomas-reyes"]
    for creator, documents in docs.items():
        suffixes = {d.source.split("#")[0].rsplit(".", 1)[1] for d in documents}
        assert {"md", "html", "pdf"} <= suffixes and suffixes & {"srt", "vtt"}, creator
        assert sum(d.source.endswith(".md") for d in documents) >= 3
        for doc in documents:
            assert doc.creator == creator and doc.document_id.startswith(f"{creator}/")
            assert doc.title and doc.blocks
            if doc.source.endswith(".md"):
                assert doc.url and doc.url.startswith("https://example.com/") and doc.published
                assert 300 <= len(doc.text.split()) <= 900
            if doc.source.endswith((".srt", ".vtt")):
                assert 20 <= len(doc.blocks) <= 40
                starts = [b.start_seconds for b in doc.blocks]
                assert starts == sorted(starts) and doc.blocks[-1].end_seconds > 180


def test_demo_corpus_html_chrome_is_dropped(demo_documents: dict[str, list[Document]]) -> None:
    pages = [d for ds in demo_documents.values() for d in ds if d.source.endswith(".html")]
    assert len(pages) == 3
    for doc in pages:
        assert doc.url and doc.url.startswith("https://example.com/")
        chrome_texts = ["All rights reserved", "analyticsQueue", "labTracker", "bookingWidget", "Subscribe"]
        chrome_texts += ["Cookie settings", "Book a table", "newsletter", "Private dining", "enable JavaScript"]
        for chrome in chrome_texts:
            assert chrome not in doc.text, (doc.source, chrome)


def test_demo_corpus_canaries_stay_with_their_creator(demo_documents: dict[str, list[Document]]) -> None:
    canaries = {"Quillfield fold": "hazel-marsh", "Vessen index": "ines-calloway", "Brassard rest": "tomas-reyes"}
    listed = (DEMO_CONTENT / "CANARIES.md").read_text(encoding="utf-8")
    docs = demo_documents
    for term, owner in canaries.items():
        assert f"| {term} | {owner} |" in listed
        for creator, documents in docs.items():
            found = [d.source for d in documents if term.lower() in d.text.lower()]
            assert bool(found) == (creator == owner), (term, creator, found)
        owner_formats = {d.source.split("#")[0].rsplit(".", 1)[1] for d in docs[owner] if term in d.text}
        assert {"md", "html", "pdf"} <= owner_formats
