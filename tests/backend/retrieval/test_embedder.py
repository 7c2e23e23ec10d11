"""The embedder: offline, normalized float32, one instance per settings, and the ONNX int8 export."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from backend.errors import ErrorCode, LorechatError
from backend.retrieval.embedder import Embedder, get_embedder
from backend.settings import EmbeddingSettings

SENTENCES = [
    "Proof the sourdough overnight in the fridge.",
    "A Dobsonian telescope gives the most aperture per euro.",
    "How do I keep my starter alive while on holiday?",
    "Les croissants demandent du beurre très froid.",
]


def test_identity_and_shape(embedder: Embedder) -> None:
    assert embedder.embedder_id == "all-MiniLM-L6-v2/torch"
    assert embedder.dimension == 384
    vectors = embedder.embed_documents(SENTENCES, batch_size=2)
    assert vectors.shape == (4, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_query_matches_document_encoding_and_meaning(embedder: Embedder) -> None:
    query = embedder.embed_query("when should I let the dough rise?")
    assert query.shape == (384,)
    documents = embedder.embed_documents(SENTENCES)
    scores = documents @ query
    assert int(np.argmax(scores)) == 0, scores
    np.testing.assert_allclose(embedder.embed_query(SENTENCES[1]), documents[1], atol=1e-5)


def test_empty_batch(embedder: Embedder) -> None:
    assert embedder.embed_documents([]).shape == (0, 384)


def test_get_embedder_is_shared(embedder: Embedder, embedder_data_dir: Path) -> None:
    assert get_embedder(EmbeddingSettings(), data_dir=embedder_data_dir) is embedder


def test_bad_model_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LorechatError) as caught:
        Embedder(EmbeddingSettings(model_path=str(tmp_path)), data_dir=tmp_path)
    assert caught.value.code is ErrorCode.invalid_input
    assert str(tmp_path) in caught.value.message


@pytest.mark.slow
def test_onnx_int8_agrees_with_torch_and_export_is_reused(embedder: Embedder, tmp_path: Path) -> None:
    settings = EmbeddingSettings(backend="onnx-int8")
    int8 = Embedder(settings, data_dir=tmp_path)
    assert int8.embedder_id == "all-MiniLM-L6-v2/onnx-int8"
    exported = tmp_path / "models" / "all-MiniLM-L6-v2-onnx-int8" / "onnx" / "model_int8_avx2.onnx"
    assert exported.is_file()
    # No half-finished export folders left behind.
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["all-MiniLM-L6-v2-onnx-int8"]

    quantized = int8.embed_documents(SENTENCES)
    reference = embedder.embed_documents(SENTENCES)
    assert quantized.dtype == np.float32
    cosines = np.sum(quantized * reference, axis=1)
    assert cosines.min() > 0.95, cosines

    written = exported.stat().st_mtime_ns
    started = time.monotonic()
    again = Embedder(settings, data_dir=tmp_path)
    assert exported.stat().st_mtime_ns == written
    assert time.monotonic() - started < 30
    np.testing.assert_allclose(again.embed_documents(SENTENCES), quantized, atol=1e-5)
