"""A chunk's sentence vectors as stored with it (the payload field `sentence_vectors`): the one definition of the
format, read by retrieval (late interaction, `late_interaction.py`) and by grounding (the sentence cache)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

import numpy as np


def pack_vectors(vectors: np.ndarray | Sequence[np.ndarray]) -> str:
    """ "<dimension>:" then float16 rows in base64 (cosines move by less than 1e-3; 2/3 of float32's bytes even
    after base64)."""
    matrix = np.asarray(vectors, dtype="<f2")
    return f"{matrix.shape[1]}:" + base64.b64encode(matrix.tobytes()).decode("ascii")


def unpack_vectors(packed: str, rows: int | None = None) -> np.ndarray | None:
    """The rows packed by `pack_vectors`, unit length again, float32. With `rows` (the chunk's sentence count),
    None when they do not fit that many sentences (the chunk's text and its vectors disagree); without, as many
    rows as were packed. None for anything malformed."""
    dimension, _, body = packed.partition(":")
    try:
        raw = base64.b64decode(body, validate=True)
        width = int(dimension)
    except (binascii.Error, ValueError):
        return None
    if width <= 0 or not raw or len(raw) % (2 * width):
        return None
    count = len(raw) // (2 * width)
    if rows is not None and (rows <= 0 or rows != count):
        return None
    matrix = np.frombuffer(raw, dtype="<f2").reshape(count, width).astype(np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)
