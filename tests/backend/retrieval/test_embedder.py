"""The embedder: offline, normalized float32, one instance per settings, and the ONNX int8 export."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from backend.errors import ErrorCode, LorechatError
from backend.retrieval.embedder import Embedder, for_serving, get_embedder, model_cache_dir
from backend.retrieval.onnx_encoder import OnnxEncoder
from backend.settings import EmbeddingSettings

SENTENCES = [
    "Proof the sourdough overnight in the fridge.",
    "A Dobsonian telescope gives the most aperture per euro.",
    "How do I keep my starter alive while on holiday?",
    "Les croissants demandent du beurre très froid.",
]


def test_identity_and_shape(embedder: Embedder) -> None:
    assert embedder.embedder_id == "all-MiniLM-L6-v2/onnx"  # the default backend
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


def test_queries_go_ahead_of_a_long_batch_and_slices_change_nothing(embedder: Embedder) -> None:
    """A batch takes the model one slice at a time, so a query started meanwhile waits for one slice, not the
    whole batch; the vectors are the same as one call's."""
    texts = [f"{sentence} ({n})" for n in range(60) for sentence in SENTENCES]  # 240 texts: many slices of 4
    whole = embedder.embed_documents(texts, batch_size=len(texts))
    finished: list[str] = []

    def batch() -> None:
        np.testing.assert_allclose(embedder.embed_documents(texts, batch_size=4), whole, atol=1e-5)
        finished.append("batch")

    worker = threading.Thread(target=batch)
    worker.start()
    time.sleep(0.05)  # the batch holds the model
    embedder.embed_query("when should I let the dough rise?")
    finished.append("query")
    worker.join()
    assert finished == ["query", "batch"]


def test_empty_batch(embedder: Embedder) -> None:
    assert embedder.embed_documents([]).shape == (0, 384)


def test_get_embedder_is_shared(embedder: Embedder) -> None:
    assert get_embedder(EmbeddingSettings()) is embedder


def test_bad_model_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LorechatError) as caught:
        Embedder(EmbeddingSettings(model_path=str(tmp_path)))
    assert caught.value.code is ErrorCode.invalid_input
    assert str(tmp_path) in caught.value.message


@pytest.mark.slow
def test_onnx_int8_agrees_with_torch_and_export_is_reused(embedder: Embedder, tmp_path: Path) -> None:
    settings = EmbeddingSettings(backend="onnx-int8", cache_dir=str(tmp_path / "models"))
    int8 = Embedder(settings)
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
    again = Embedder(settings)
    assert exported.stat().st_mtime_ns == written
    assert time.monotonic() - started < 30
    np.testing.assert_allclose(again.embed_documents(SENTENCES), quantized, atol=1e-5)


@pytest.mark.slow
def test_onnx_fp32_gives_the_torch_vectors(embedder: Embedder) -> None:
    """Why the default may be ONNX and either fp32 runtime may open an index the other built."""
    torch = get_embedder(EmbeddingSettings(backend="torch"))
    assert torch.embedder_id == "all-MiniLM-L6-v2/torch"
    cosines = np.sum(torch.embed_documents(SENTENCES) * embedder.embed_documents(SENTENCES), axis=1)
    assert cosines.min() > 0.9999, cosines


def test_the_service_gives_a_model_call_one_core_unless_told(embedder: Embedder) -> None:
    """A query is too small to split across cores (scripts/bench/query_threads); ingestion uses them all."""
    assert for_serving(EmbeddingSettings()).threads == 1
    assert for_serving(EmbeddingSettings(threads=3)).threads == 3
    serving = get_embedder(for_serving(EmbeddingSettings()))
    assert serving is not embedder and serving.threads == 1
    assert embedder.threads >= 1  # every core of this machine
    sessions = [model[0].auto_model.session for model in (serving._model, embedder._model)]
    assert [session.get_session_options().intra_op_num_threads for session in sessions] == [1, embedder.threads]
    # The thread count changes the summation order only, never a ranking.
    cosines = np.sum(serving.embed_documents(SENTENCES) * embedder.embed_documents(SENTENCES), axis=1)
    assert cosines.min() > 0.99999, cosines
    np.testing.assert_allclose(serving.embed_query(SENTENCES[2]), embedder.embed_query(SENTENCES[2]), atol=1e-5)


def test_exports_live_in_one_cache_per_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LORECHAT_MODEL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert model_cache_dir(EmbeddingSettings()) == tmp_path / "lorechat" / "models"
    monkeypatch.setenv("LORECHAT_MODEL_CACHE", str(tmp_path / "shared"))
    assert model_cache_dir(EmbeddingSettings()) == tmp_path / "shared"
    assert model_cache_dir(EmbeddingSettings(cache_dir="/srv/models")) == Path("/srv/models")


def test_window_and_token_count_are_the_models_own(embedder: Embedder) -> None:
    """Issue 15: the window is the model's max_seq_length, and count_tokens counts what encode() reads."""
    model = embedder._model
    assert embedder.max_tokens == model.max_seq_length == 256
    for text in ("", "PostgreSQL's VACUUM reclaims storage.", "pg_stat_statements " * 40):
        # tokenize() truncates at the window: below it, both counts agree exactly.
        truncated = len(model.tokenize([text])["input_ids"][0])
        assert min(embedder.count_tokens(text), embedder.max_tokens) == truncated
    assert embedder.count_tokens("word " * 400) > embedder.max_tokens  # counting never truncates


def test_a_text_past_the_window_embeds_like_its_head(embedder: Embedder) -> None:
    """Why chunks must fit: whatever follows the 256th model token changes nothing in the vector."""
    head = "The checkpointer writes dirty buffers to disk. " * 30
    assert embedder.count_tokens(head) > embedder.max_tokens
    a, b = embedder.embed_documents([head, head + "Completely different tail about sourdough bread."])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_the_direct_onnx_path_gives_sentence_transformers_vectors(embedder: Embedder) -> None:
    """Queries and batches (padded to their longest text, one past the window) skip `encode` but not its
    result; int8 goes the same way."""
    assert embedder._direct is not None  # the bundled model has the plain layout
    texts = [*SENTENCES, "The checkpointer writes dirty buffers to disk. " * 30, "Why?"]
    model = embedder._model
    expected = model.encode(texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(embedder.embed_documents(texts, batch_size=len(texts)), expected, atol=1e-6)
    expected_query = model.encode([SENTENCES[2]], normalize_embeddings=True, convert_to_numpy=True)[0]
    np.testing.assert_allclose(embedder.embed_query(SENTENCES[2]), expected_query, atol=1e-6)


def test_a_model_off_the_plain_layout_keeps_sentence_transformers(embedder: Embedder) -> None:
    """Another pooling (here max), and the direct path is declined rather than approximated."""
    model = embedder._model
    pooling = model[1]
    mode = pooling.pooling_mode
    pooling.pooling_mode = "max"
    try:
        assert OnnxEncoder.for_model(model, max_tokens=embedder.max_tokens) is None
    finally:
        pooling.pooling_mode = mode
    assert OnnxEncoder.for_model(model, max_tokens=embedder.max_tokens) is not None


def test_the_direct_path_normalizes_a_model_without_a_normalize_module(embedder: Embedder) -> None:
    """The embedder always asks for L2-normalized vectors; a model that stops at its pooling gets them too."""
    from sentence_transformers import SentenceTransformer

    model = embedder._model
    unnormalized = SentenceTransformer(modules=[model[0], model[1]], device="cpu")
    direct = OnnxEncoder.for_model(unnormalized, max_tokens=embedder.max_tokens)
    assert direct is not None
    vectors = direct.encode(SENTENCES)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(vectors, embedder.embed_documents(SENTENCES), atol=1e-6)
