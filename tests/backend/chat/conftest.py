"""The chat tests' shared fixture: the extractive tier's sentence vectors over the session's real embedder."""

from __future__ import annotations

import pytest

from backend.grounding.sentences import SentenceVectors
from backend.retrieval.embedder import Embedder


@pytest.fixture(scope="module")
def vectors(shared_embedder: Embedder) -> SentenceVectors:
    return SentenceVectors(shared_embedder)
