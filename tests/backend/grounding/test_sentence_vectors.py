"""Sentence vectors: cached by text, and each new text embedded by one thread even when turns arrive together."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest

from backend.grounding import sentences
from backend.grounding.sentences import SentenceVectors, sentence_texts
from backend.retrieval.embedder import Embedder
from backend.retrieval.packed_vectors import pack_vectors, unpack_vectors
from backend.stages import Hit


class CountingEmbedder:
    """The real embedder, counting how often each text goes through the model (test instrumentation)."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner
        self.embedded: Counter[str] = Counter()
        self._lock = threading.Lock()

    def embed_documents(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        with self._lock:
            self.embedded.update(texts)
        return self._inner.embed_documents(texts, batch_size=batch_size)


def test_turns_arriving_together_embed_each_new_sentence_once(shared_embedder: Embedder) -> None:
    counting = CountingEmbedder(shared_embedder)
    vectors = SentenceVectors(counting)
    sentences = [f"The Quillfield dough rests for {n} minutes before shaping." for n in range(40)]
    start = threading.Barrier(8)
    results: list[np.ndarray] = []

    def turn() -> None:
        start.wait()
        results.append(vectors.encode([*sentences, "A question only this turn asks?"]))

    threads = [threading.Thread(target=turn) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert all(counting.embedded[s] == 1 for s in sentences), counting.embedded
    assert counting.embedded["A question only this turn asks?"] == 1
    expected = shared_embedder.embed_documents(sentences)
    for result in results:
        np.testing.assert_allclose(result[:40], expected, atol=1e-5)
    # Cached from now on: no model call at all.
    before = sum(counting.embedded.values())
    vectors.encode(sentences[:5])
    assert sum(counting.embedded.values()) == before


def test_a_failed_batch_does_not_leave_waiters_hanging(shared_embedder: Embedder) -> None:
    class FailingOnce(CountingEmbedder):
        failed = False

        def embed_documents(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
            if not self.failed:
                self.failed = True
                started.set()
                release.wait(5)
                raise RuntimeError("model crashed")
            return super().embed_documents(texts, batch_size=batch_size)

    started, release = threading.Event(), threading.Event()
    vectors = SentenceVectors(FailingOnce(shared_embedder))
    errors: list[BaseException] = []
    waited: list[np.ndarray] = []

    def first() -> None:
        try:
            vectors.encode(["Rye needs a longer proof."])
        except RuntimeError as exc:
            errors.append(exc)

    def second() -> None:
        waited.append(vectors.encode(["Rye needs a longer proof."]))

    one = threading.Thread(target=first)
    one.start()
    assert started.wait(5)
    two = threading.Thread(target=second)
    two.start()
    release.set()
    one.join(5)
    two.join(5)
    assert not two.is_alive() and len(errors) == 1 and waited[0].shape == (1, 384)


def test_packed_vectors_come_back_unit_length_and_refuse_a_wrong_shape(shared_embedder: Embedder) -> None:
    sentences = ["Salt tightens gluten.", "Preheat the stone for an hour.", "Steam keeps the crust soft."]
    vectors = shared_embedder.embed_documents(sentences)
    packed = pack_vectors(vectors)
    assert len(packed) < vectors.nbytes  # float16 + base64: 2/3 of float32
    back = unpack_vectors(packed, len(sentences))
    assert back is not None and back.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(back, axis=1), 1.0, atol=1e-6)
    assert float(np.min(np.sum(back * vectors, axis=1))) > 0.9999
    # A chunk whose text and vectors disagree (edited payload, another splitter) is embedded as usual.
    assert unpack_vectors(packed, 2) is None
    assert unpack_vectors(packed, 0) is None
    assert unpack_vectors("not base64!", 3) is None
    assert unpack_vectors("", 3) is None


def test_questions_are_embedded_as_the_search_embeds_them(shared_embedder: Embedder) -> None:
    """A question goes through `embed_query` (the int8 twin by default, which keeps recent questions:
    test_embedder.py), not the fp32 sentence path, and never into the sentences' cache."""
    counting = CountingEmbedder(shared_embedder)
    asked: list[str] = []

    class WithQueries(CountingEmbedder):
        def embed_query(self, text: str) -> np.ndarray:
            asked.append(text)
            return shared_embedder.embed_query(text)

    vectors = SentenceVectors(WithQueries(shared_embedder))
    question = "How long does the Quillfield dough rest?"
    first = vectors.encode_questions([question, "shaping"])
    assert asked == [question, "shaping"]
    np.testing.assert_allclose(first[0], shared_embedder.embed_query(question), atol=1e-6)
    assert not vectors._cache  # nothing went into the sentences' cache

    # An embedder without embed_query: the sentence path, cached with the sentences.
    plain = SentenceVectors(counting)
    np.testing.assert_allclose(plain.encode_questions([question])[0], shared_embedder.embed_documents([question])[0])
    assert counting.embedded[question] == 1


def test_full_precision_questions_go_through_embed_query_full(shared_embedder: Embedder) -> None:
    """`full=True` (the extractive tier's ranking) embeds through `embed_query_full`, the model's own precision, so
    a question meets the fp32 sentence vectors alike on every CPU; the default stays the search's twin."""
    asked: list[tuple[str, str]] = []

    class Both(CountingEmbedder):
        def embed_query(self, text: str) -> np.ndarray:
            asked.append(("twin", text))
            return shared_embedder.embed_query(text)

        def embed_query_full(self, text: str) -> np.ndarray:
            asked.append(("full", text))
            return shared_embedder.embed_query_full(text)

    vectors = SentenceVectors(Both(shared_embedder))
    question = "How long does the Quillfield dough rest?"
    full = vectors.encode_questions([question], full=True)
    vectors.encode_questions([question])
    assert asked == [("full", question), ("twin", question)]
    np.testing.assert_allclose(full[0], shared_embedder.embed_documents([question])[0], atol=1e-5)
    assert not vectors._cache


def test_an_answers_own_sentences_are_embedded_but_not_kept(shared_embedder: Embedder) -> None:
    """remember=False (the claim check's claims: new text every turn) uses cached vectors and embeds the rest
    without caching them, so a stream of new answers never evicts the source sentences turns come back to."""
    counting = CountingEmbedder(shared_embedder)
    vectors = SentenceVectors(counting, max_entries=4)
    source = "The Quillfield dough rests for forty minutes."
    vectors.encode([source])
    claims = [f"Answer {n} says the dough rests for forty minutes." for n in range(10)]
    got = vectors.encode([source, *claims], remember=False)
    np.testing.assert_allclose(got, shared_embedder.embed_documents([source, *claims]), atol=1e-5)
    assert counting.embedded[source] == 1  # the cached source sentence was not embedded again
    assert all(counting.embedded[claim] == 1 for claim in claims)
    assert list(vectors._cache) == [source]  # and no claim took its place


def test_an_answers_own_sentences_go_through_the_embedders_twin(shared_embedder: Embedder) -> None:
    """With the real embedder, the misses of remember=False (an answer's claims) are embedded by `embed_passing`
    (the questions' int8 twin), while a claim that is a cached source sentence keeps its fp32 vector."""
    vectors = SentenceVectors(shared_embedder)
    source = "The Quillfield dough rests for forty minutes."
    claims = ["She lets the dough rest for forty minutes [1].", "Then it bakes at 250 degrees for half an hour [1]."]
    vectors.encode([source])
    got = vectors.encode([source, *claims], remember=False)
    np.testing.assert_array_equal(got[0], shared_embedder.embed_documents([source])[0])
    np.testing.assert_allclose(got[1:], shared_embedder.embed_passing(claims), atol=1e-6)


def test_a_chunk_seen_before_is_not_decoded_again(shared_embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    """`seed` runs on the event loop each turn: a chunk whose sentences are all cached (an earlier turn retrieved
    it) costs dictionary lookups, not a base64 decode; one whose sentences were evicted is decoded again."""
    text = "Fold the dough every half hour. Rest it overnight in the fridge. Bake it hot."
    texts = sentence_texts(text)
    hit = Hit(
        chunk_id="c1", creator="ada", document_id="ada/bread.md", source="bread.md", title="Bread", url=None,
        text=text, score=1.0, sentence_vectors=pack_vectors(shared_embedder.embed_documents(texts)),
    )  # fmt: skip
    decoded: list[int] = []

    def counted(packed: str, rows: int) -> np.ndarray | None:
        decoded.append(rows)
        return unpack_vectors(packed, rows)

    monkeypatch.setattr(sentences, "unpack_vectors", counted)
    vectors = SentenceVectors(CountingEmbedder(shared_embedder), max_entries=len(texts))
    assert vectors.seed([hit])[0].sentence_vectors is None
    assert vectors.seed([hit])[0].sentence_vectors is None
    assert decoded == [len(texts)]  # the second turn found every sentence cached
    vectors.encode(["Something else entirely."])  # evicts the oldest sentence
    vectors.seed([hit])
    assert decoded == [len(texts), len(texts)]
    assert set(texts) <= set(vectors._cache)


def test_an_answers_sentences_said_again_are_embedded_once(shared_embedder: Embedder) -> None:
    """A model asked the same question again says much of its answer again: those sentences come from their own
    bounded cache, which never pushes out a source sentence."""
    counting = CountingEmbedder(shared_embedder)
    vectors = SentenceVectors(counting, max_entries=2, max_transient=2)
    sources = ["The Quillfield dough rests for forty minutes.", "Bake it at 250 degrees."]
    vectors.encode(sources)
    first = ["She lets the dough rest for forty minutes [1].", "Then it bakes hot [2]."]
    again = ["Then it bakes hot [2].", "She lets the dough rest for forty minutes [1].", "It cools on a rack."]
    got_first = vectors.encode(first, remember=False)
    got_again = vectors.encode(again, remember=False)
    np.testing.assert_array_equal(got_again[0], got_first[1])
    np.testing.assert_array_equal(got_again[1], got_first[0])
    assert counting.embedded == Counter([*sources, *first, "It cools on a rack."])
    assert set(vectors._cache) == set(sources)  # the answers' sentences pushed out no source sentence
    assert len(vectors._transient) == 2  # bounded: the oldest answer sentence went
    vectors.encode([first[1]], remember=False)
    assert counting.embedded[first[1]] == 2
