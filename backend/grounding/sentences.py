"""Source text as sentences with their character offsets, and their embeddings, cached by text.

The extractive tier, the coverage check and the claim check all compare a question or an answer with source
sentences. A source sentence is embedded once per process (LRU, keyed by its text), so a turn over chunks seen
before costs only the question's (or the answer's) own embedding plus a little numpy. Ingest stores each
chunk's sentence vectors with it (`pack_vectors`), and retrieval hands them over (`SentenceVectors.seed`), so
even a chunk no turn has touched costs no embedding: without that a turn over new chunks embedded ~70
sentences (p50 356 ms on 2 cores, BENCHMARKS.md, "Answer checks").
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Protocol

import numpy as np

from backend.retrieval.packed_vectors import unpack_vectors
from backend.stages import Hit

# A sentence ends at . ! ? (or a colon that opens a new capitalised sentence, but not a default's: "Default: True")
# followed by space, at a line break between transcript cues or list items, or at a blank line.
_BOUNDARY = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])|(?<=:)(?<!\bDefault:)\s+(?=[A-Z])|\s*\n\s*")
_MIN_CHARS = 3
# A changelog entry's issue or pull request after its full stop ("Drop support for Python 3.6. #2129", "... (#1469)",
# "... #1782, #1783"): the sentence is closed, the numbers only point to where it was discussed.
_ISSUE_REFERENCES = re.compile(r"(?<=[.!?])(?:[\s,]+\(?(?:#|GH-)\d+\)?)+$")


@dataclass(frozen=True, slots=True)
class Span:
    start: int  # character offsets into the text it was cut from
    end: int
    text: str  # the same characters, whitespace collapsed

    @property
    def is_heading(self) -> bool:
        """A short line without closing punctuation: a heading or a label, not something to quote as an answer. A
        table row ("valgrind | memory debugger", as ingest writes one) is a row's facts, never a heading. A closing
        parenthesis closes a sentence only after its own full stop: "deadlock_timeout (integer)" is a label. A
        changelog entry's issue number after its full stop changes nothing: "Drop support for Python 3.6. #2129" is a
        sentence."""
        if " | " in self.text:
            return False
        text = _ISSUE_REFERENCES.sub("", self.text)
        return not text.endswith((".", "!", "?", "…", '"', "”", ".)", "!)", "?)")) and len(text.split()) < 9


@lru_cache(maxsize=4096)
def split_sentences(text: str) -> tuple[Span, ...]:
    """The sentences of `text`, in order, with offsets such that text[start:end] is the sentence as written.
    Cached: the same chunks come back turn after turn."""
    spans: list[Span] = []
    start = 0
    for boundary in [*_BOUNDARY.finditer(text), None]:
        end = boundary.start() if boundary else len(text)
        piece = text[start:end]
        stripped = piece.strip()
        if len(stripped) >= _MIN_CHARS:
            lead = len(piece) - len(piece.lstrip())
            spans.append(Span(start + lead, start + lead + len(stripped), " ".join(stripped.split())))
        if boundary is not None:
            start = boundary.end()
    return tuple(spans)


def sentence_texts(text: str) -> list[str]:
    """What is embedded per sentence of a chunk, in order: the texts `pack_vectors` rows stand for."""
    return [span.text for span in split_sentences(text)]


class TextEmbedder(Protocol):
    def embed_documents(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray: ...


def _trim(cache: OrderedDict[str, np.ndarray], limit: int) -> None:
    """Drop the least recently used entries beyond `limit`."""
    while len(cache) > limit:
        cache.popitem(last=False)


class SentenceVectors:
    """Normalized sentence embeddings from the retrieval model, cached by text. Thread-safe; CPU-bound on a miss,
    so async callers use a worker thread."""

    def __init__(
        self,
        embedder: TextEmbedder | Callable[[], TextEmbedder],
        *,
        max_entries: int = 20_000,
        max_transient: int = 2_048,
    ) -> None:
        # A callable is resolved on first use: the tiers are built before the lifespan has loaded the model.
        self._embedder = embedder
        self._max = max_entries
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        # Answers' own sentences, kept apart so they never push out source sentences: a repeated question answered
        # the same way (greedy decoding repeats most sentences) is not embedded again, at ~3 ms a sentence.
        self._max_transient = max_transient
        self._transient: OrderedDict[str, np.ndarray] = OrderedDict()
        # Texts some thread is embedding right now: turns arriving together over the same new chunks wait for
        # that one batch instead of each embedding the same sentences again (they would queue for the model).
        self._pending: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._loading = threading.Lock()

    @property
    def loaded(self) -> bool:
        """The model is in memory: encoding costs milliseconds, not a model load."""
        return hasattr(self._embedder, "embed_documents")

    def load(self) -> None:
        self._model()

    def _model(self) -> TextEmbedder:
        if not hasattr(self._embedder, "embed_documents"):
            with self._loading:
                if callable(self._embedder) and not hasattr(self._embedder, "embed_documents"):
                    self._embedder = self._embedder()
        return self._embedder

    def seed(self, hits: Sequence[Hit]) -> list[Hit]:
        """Cache the sentence vectors stored with these chunks at ingest; returns the hits without them (a turn
        keeps its hits while it streams, and the vectors are ~20x the chunk's text). Runs on the event loop, so a
        chunk whose sentences are all cached already (an earlier turn retrieved it) is not decoded again."""
        packed: list[tuple[list[str], str]] = []
        bare: list[Hit] = []
        for hit in hits:
            if hit.sentence_vectors is None:
                bare.append(hit)
                continue
            bare.append(dataclasses.replace(hit, sentence_vectors=None))
            packed.append((sentence_texts(hit.text), hit.sentence_vectors))
        unseen: list[tuple[list[str], str]] = []
        with self._lock:
            for texts, vectors in packed:
                if texts and all(text in self._cache for text in texts):
                    for text in texts:
                        self._cache.move_to_end(text)
                else:
                    unseen.append((texts, vectors))
        fresh: list[tuple[str, np.ndarray]] = []
        for texts, vectors in unseen:
            matrix = unpack_vectors(vectors, len(texts))  # None for "" (a chunk without sentences)
            if matrix is not None:
                fresh.extend(zip(texts, matrix, strict=True))
        if fresh:
            with self._lock:
                for text, vector in fresh:
                    if text in self._cache:
                        self._cache.move_to_end(text)
                    else:
                        self._cache[text] = vector
                _trim(self._cache, self._max)
        return bare

    def _encode_transient(self, texts: Sequence[str]) -> np.ndarray:
        unique = list(dict.fromkeys(texts))
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for text in unique:
                vector = self._cache.get(text)
                if vector is None and (vector := self._transient.get(text)) is not None:
                    self._transient.move_to_end(text)
                if vector is not None:
                    found[text] = vector
        misses = [text for text in unique if text not in found]
        if misses:
            model = self._model()
            # At the questions' precision where the embedder has it (int8: ~3.4 ms a 25-word sentence on one core
            # against ~9 in fp32), compared with fp32 source sentences as a question is: for a model's answer this
            # is most of a turn's own CPU (BENCHMARKS.md, "Answer checks").
            embed = getattr(model, "embed_passing", None) or partial(model.embed_documents, batch_size=16)
            fresh = dict(zip(misses, embed(misses), strict=True))
            found.update(fresh)
            with self._lock:
                self._transient.update(fresh)
                _trim(self._transient, self._max_transient)
        return np.stack([found[text] for text in texts])

    def encode_questions(self, texts: Sequence[str], *, full: bool = False) -> np.ndarray:
        """Shape (len(texts), dimension): questions embedded as the search embeds them (`embed_query`: the int8
        twin by default, a fraction of an fp32 call, and kept by the embedder for questions asked again; compared
        against fp32 sentence vectors as the search compares it against fp32 chunks); `encode` for an embedder
        without it. `full`: at the model's own precision (`embed_query_full`), the same vectors on every CPU (the
        twin's differ between AVX2 and AVX-512 int8 kernels)."""
        model = self._model()
        embed_query = getattr(model, "embed_query_full" if full else "embed_query", None)
        if embed_query is None:
            return self.encode(texts)
        return np.stack([embed_query(text) for text in texts])

    def encode(self, texts: Sequence[str], *, remember: bool = True) -> np.ndarray:
        """Shape (len(texts), dimension); misses are embedded together in one batch, each text by one thread.
        `remember=False` (an answer's own sentences): source sentences cached are used, misses are embedded and
        kept apart, among the last `max_transient` answer sentences, so they never push out the source sentences
        that later turns come back to."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        if not remember:
            return self._encode_transient(texts)
        found: dict[str, np.ndarray] = {}
        mine: list[str] = []  # misses this call embeds
        others: list[tuple[str, threading.Event]] = []  # misses another thread is embedding now
        with self._lock:
            for text in dict.fromkeys(texts):
                vector = self._cache.get(text)
                if vector is not None:
                    self._cache.move_to_end(text)
                    found[text] = vector
                elif (pending := self._pending.get(text)) is not None:
                    others.append((text, pending))
                else:
                    self._pending[text] = threading.Event()
                    mine.append(text)
        if mine:
            try:
                fresh = self._model().embed_documents(mine, batch_size=16)
                with self._lock:
                    for text, vector in zip(mine, fresh, strict=True):
                        found[text] = vector
                        self._cache[text] = vector
                    _trim(self._cache, self._max)
            finally:  # cached (or failed): either way the waiting threads go on
                with self._lock:
                    done = [self._pending.pop(text) for text in mine]
                for event in done:
                    event.set()
        for text, event in others:
            event.wait()
            with self._lock:
                vector = self._cache.get(text)
            # The other thread failed, or its vector was evicted already: embed it here.
            found[text] = vector if vector is not None else self._model().embed_documents([text])[0]
        return np.stack([found[text] for text in texts])
