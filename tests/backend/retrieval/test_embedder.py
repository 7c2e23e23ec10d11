"""The embedder: offline, normalized float32, one instance per settings, and the ONNX int8 export."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from backend.errors import ErrorCode, LorechatError
from backend.retrieval.embedder import Embedder, for_serving, get_embedder
from backend.retrieval.model_files import model_cache_dir, preset_for
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
    # Questions go through the int8 twin by default: close to the fp32 document vector of the same text, not equal.
    assert embedder.query_precision.startswith("int8/")
    twin = embedder.embed_query(SENTENCES[1])
    assert 0.98 <= float(twin @ documents[1]) < 1 - 1e-6
    assert np.linalg.norm(twin) == pytest.approx(1.0, abs=1e-5)


def test_a_full_precision_question_skips_the_twin(embedder: Embedder) -> None:
    """`embed_query_full` (curated answers' matching, whose threshold must hold on every CPU) embeds a question as
    the fp32 model does, never through the int8 twin, and remembers it apart from the twin's vector."""
    documents = embedder.embed_documents(SENTENCES)
    full = embedder.embed_query_full(SENTENCES[2])
    np.testing.assert_allclose(full, documents[2], atol=1e-5)
    assert not full.flags.writeable
    assert embedder.embed_query_full(SENTENCES[2]) is full  # asked again: no model call
    twin = embedder.embed_query(SENTENCES[2])
    assert float(twin @ full) < 1 - 1e-6  # the default's questions: the twin


def test_batches_go_shortest_first_and_come_back_in_order(embedder: Embedder) -> None:
    """A batch is padded to its longest text, so texts are batched by length; each row still answers its text."""
    texts = [SENTENCES[1] * 6, "Bake.", SENTENCES[0], SENTENCES[3] * 3, "Fold it.", SENTENCES[2]]
    batched = embedder.embed_documents(texts, batch_size=2)
    one_by_one = np.stack([embedder.embed_documents([text])[0] for text in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_a_question_asked_again_is_served_without_the_model(
    embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Questions repeat (a widget's suggested ones, popular ones, the answer checks' second look at a turn's
    question): a recent one's vector is kept, shared read-only, and the model runs once per new text."""
    ran: list[str] = []
    model = embedder._embed_query

    def counted(text: str) -> np.ndarray:
        ran.append(text)
        return model(text)

    monkeypatch.setattr(embedder, "_embed_query", counted)
    question = f"how long does the {time.time_ns()} loaf rest?"  # new to this process's cache
    first = embedder.embed_query(question)
    again = embedder.embed_query(question)
    other = embedder.embed_query(question + " in winter")
    assert ran == [question, question + " in winter"]
    np.testing.assert_array_equal(again, first)
    assert not first.flags.writeable  # one caller cannot change what the next one gets
    assert float(other @ first) < 0.9999


def test_fp32_queries_when_not_quantized(tmp_path: Path) -> None:
    """quantized_queries: false embeds a question exactly as a document (the same fp32 session)."""
    plain = Embedder(EmbeddingSettings(quantized_queries=False))
    assert plain.query_precision == "fp32"
    assert plain.embedder_id == "all-MiniLM-L6-v2/onnx"  # the index never sees which one embeds questions
    np.testing.assert_allclose(plain.embed_query(SENTENCES[1]), plain.embed_documents(SENTENCES)[1], atol=1e-5)
    # And text embedded once and dropped (the claim check's answer sentences) as documents are.
    np.testing.assert_array_equal(plain.embed_passing(SENTENCES), plain.embed_documents(SENTENCES, batch_size=8))


def test_passing_text_goes_through_the_twin_in_order(embedder: Embedder) -> None:
    """An answer's own sentences, compared once with fp32 source sentences, take the questions' precision: the
    int8 twin, close to the fp32 vectors and not equal to them, each row still its own text's."""
    texts = [SENTENCES[1] * 3, "Bake.", *SENTENCES, "Fold it."] * 3  # more than one slice, lengths mixed
    passing = embedder.embed_passing(texts)
    documents = embedder.embed_documents(texts)
    cosines = np.sum(passing * documents, axis=1)
    assert passing.shape == documents.shape and passing.dtype == np.float32
    assert cosines.min() >= 0.98 and cosines.max() < 1 - 1e-6, cosines
    assert embedder.embed_passing([]).shape == (0, 384)


@pytest.mark.parametrize(
    ("machine", "flags", "preset"),
    [
        ("x86_64", {"avx2", "avx512f", "avx512bw", "avx512_vnni"}, "avx512_vnni"),
        ("x86_64", {"avx2", "fma"}, "avx2"),  # VNNI's signed weights would saturate in AVX2's int8 multiply
        ("x86_64", {"sse4_2"}, None),
        ("aarch64", set(), "arm64"),
        ("riscv64", set(), None),
    ],
)
def test_int8_preset_follows_the_cpu(machine: str, flags: set[str], preset: str | None) -> None:
    assert preset_for(machine, flags) == preset


def test_no_twin_without_a_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("backend.retrieval.embedder.int8_preset", lambda: None)
    plain = Embedder(EmbeddingSettings())
    assert plain.query_precision == "fp32"


def test_a_batch_holds_as_many_texts_as_fit_its_padded_size() -> None:
    """Texts sorted shortest first go in slices of at most `size` texts and `budget` characters once padded to the
    slice's longest: short sentences many at a time, chunks a few at a time, a text over the budget alone; every
    text in exactly one slice, in order."""
    from backend.retrieval.embedder import _slices

    lengths = [10] * 50 + [300] * 10 + [900, 1000, 5000]
    slices = _slices(lengths, 32, 2048)
    assert [end - start for start, end in slices] == [32, 18, 6, 4, 2, 1]
    assert [i for start, end in slices for i in range(start, end)] == list(range(len(lengths)))
    assert all((end - start) * lengths[end - 1] <= 2048 or end - start == 1 for start, end in slices)
    assert _slices(lengths, 32, 10**9) == [(0, 32), (32, 63)]  # no budget: slices of `size`, as before
    assert _slices([], 32, 2048) == []


def test_queries_go_ahead_of_a_long_batch_and_slices_change_nothing(embedder: Embedder) -> None:
    """A query started during a long batch finishes first (its int8 twin has a session of its own; with fp32
    queries the batch takes the model one slice at a time, so a query waits for one slice, not the whole
    batch); the batch's vectors are the same as one call's."""
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
def test_query_twin_is_exported_once_per_preset(tmp_path: Path) -> None:
    settings = EmbeddingSettings(cache_dir=str(tmp_path / "models"))
    first = Embedder(settings)
    preset = first.query_precision.removeprefix("int8/")
    exported = first.query_model_file
    assert exported is not None and exported.is_file() and exported.name == f"model_int8_{preset}.onnx"
    folder = exported.parents[1]
    assert folder.parent == tmp_path / "models"
    assert sorted(p.name for p in folder.parent.iterdir()) == sorted(["all-MiniLM-L6-v2-onnx", folder.name])
    written = exported.stat().st_mtime_ns
    again = Embedder(settings)
    assert exported.stat().st_mtime_ns == written
    np.testing.assert_allclose(again.embed_query("dough"), first.embed_query("dough"), atol=1e-6)


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
    """Batches (padded to their longest text, one past the window) and fp32 queries skip `encode` but not its
    result; int8 goes the same way."""
    assert embedder._direct is not None  # the bundled model has the plain layout
    texts = [*SENTENCES, "The checkpointer writes dirty buffers to disk. " * 30, "Why?"]
    model = embedder._model
    expected = model.encode(texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(embedder.embed_documents(texts, batch_size=len(texts)), expected, atol=1e-6)
    fp32 = Embedder(EmbeddingSettings(quantized_queries=False))
    np.testing.assert_allclose(fp32.embed_query(SENTENCES[2]), expected[2], atol=1e-6)


@pytest.mark.slow
def test_the_query_twin_gives_sentence_transformers_int8_vectors(embedder: Embedder) -> None:
    """The int8 twin's direct path reproduces sentence-transformers on the same int8 file."""
    from sentence_transformers import SentenceTransformer

    exported = embedder.query_model_file
    assert exported is not None
    model = SentenceTransformer(
        str(exported.parents[1]),
        device="cpu",
        backend="onnx",
        local_files_only=True,
        model_kwargs={"file_name": f"onnx/{exported.name}", "provider": "CPUExecutionProvider"},
    )
    expected = model.encode([SENTENCES[2]], normalize_embeddings=True, convert_to_numpy=True)[0]
    np.testing.assert_allclose(embedder.embed_query(SENTENCES[2]), expected, atol=1e-5)


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
