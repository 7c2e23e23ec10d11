"""The ONNX model called directly: Rust tokenizer → one `InferenceSession.run` → pooling in numpy.

sentence-transformers' `encode` wraps the same ONNX session in the transformers tokenizer, torch tensors
converted to numpy and back, and a torch op per pooling step, each giving up and re-taking the GIL. For one
short query that wrapping cost ~2 ms of the ~6.5 ms (BENCHMARKS.md, "Embedding"); here a query takes the GIL back once,
after `run`.

Only the plain layout is taken this way (Transformer → mean or CLS pooling → optional Normalize, a fast
tokenizer, no lower-casing step of its own); `OnnxEncoder.for_model` returns None for anything else, and also when
its vectors for a probe text differ from the model's own, so the embedder keeps using `encode` there. Vectors
are always L2-normalized, as the embedder always asks `encode` for them.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from tokenizers import Tokenizer

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

_INPUTS = {"input_ids", "attention_mask", "token_type_ids"}
# The same graph on the same inputs: what differs is padding (a batch pads to its longest text) and summation
# order, far below what changes a ranking (cosines are compared to ~1e-3).
_PROBE_TOLERANCE = 1e-5
_PROBE = "How long does the dough rest before it is shaped? About 40 minutes, covered, at room temperature."

Pooling = Literal["mean", "cls"]


class OnnxEncoder:
    """Not thread-safe (the tokenizer): the embedder calls it under its lock."""

    def __init__(self, *, session: Any, tokenizer: Tokenizer, pooling: Pooling, pad_id: int) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._pooling = pooling
        self._pad_id = pad_id
        self._inputs = [item.name for item in session.get_inputs()]
        self._output = session.get_outputs()[0].name

    @classmethod
    def for_model(cls, model: SentenceTransformer, *, max_tokens: int) -> OnnxEncoder | None:
        """An encoder giving `model`'s own vectors, or None when the model is not the plain layout."""
        layout = _plain_layout(model)
        if layout is None:
            return None
        session, fast, pooling = layout
        tokenizer = copy.deepcopy(fast)
        tokenizer.no_padding()  # the batch pads itself, to its longest text
        tokenizer.enable_truncation(max_length=max_tokens)
        pad_id = model.tokenizer.pad_token_id
        encoder = cls(
            session=session,
            tokenizer=tokenizer,
            pooling=pooling,
            pad_id=int(pad_id) if pad_id is not None else 0,
        )
        probe = [_PROBE, _PROBE[:20]]
        theirs = np.asarray(
            model.encode(probe, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False),
            dtype=np.float32,
        )
        ours = encoder.encode(probe)
        if ours.shape != theirs.shape or float(np.abs(ours - theirs).max()) > _PROBE_TOLERANCE:
            log.warning("the direct ONNX path does not reproduce this model's vectors; using sentence-transformers")
            return None
        return encoder

    def twin(self, session: Any) -> OnnxEncoder:
        """The same tokenizer and pooling over another session of the same model (an int8 copy of it, say),
        with a tokenizer of its own so the two can run at once."""
        return OnnxEncoder(
            session=session, tokenizer=copy.deepcopy(self._tokenizer), pooling=self._pooling, pad_id=self._pad_id
        )

    def encode(self, texts: Sequence[str], *, prompt: str = "") -> np.ndarray:
        """Shape (len(texts), dimension), float32, L2-normalized; one `run` for the whole batch (`texts` not empty)."""
        encodings = self._tokenizer.encode_batch([prompt + text for text in texts] if prompt else list(texts))
        width = max(len(encoding.ids) for encoding in encodings)
        ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            length = len(encoding.ids)
            ids[row, :length] = encoding.ids
            mask[row, :length] = 1
            types[row, :length] = encoding.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        tokens = self._session.run([self._output], {name: feeds[name] for name in self._inputs})[0]
        if self._pooling == "cls":
            vectors = tokens[:, 0, :]
        else:
            weights = mask[:, :, None].astype(tokens.dtype)
            vectors = (tokens * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        vectors = np.asarray(vectors, dtype=np.float32)
        # As sentence-transformers' normalize_embeddings (and its Normalize module) do it.
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _plain_layout(model: SentenceTransformer) -> tuple[Any, Tokenizer, Pooling] | None:
    """(session, fast tokenizer, pooling) when `model` is Transformer → Pooling → [Normalize] on ONNX."""
    modules = list(model)
    names = [type(module).__name__ for module in modules]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return None
    transformer, pooling = modules[0], modules[1]
    session = getattr(getattr(transformer, "auto_model", None), "session", None)
    fast = getattr(model.tokenizer, "backend_tokenizer", None)
    if session is None or not isinstance(fast, Tokenizer) or getattr(transformer, "do_lower_case", False):
        return None
    if not {item.name for item in session.get_inputs()} <= _INPUTS:
        return None
    mode = getattr(pooling, "pooling_mode", None)
    if mode not in ("mean", "cls") or not getattr(pooling, "include_prompt", True):
        return None
    return session, fast, mode
