"""Each chunk's sentences embedded at ingest, stored with the chunk (backend/grounding/sentences.py reads them back).

A turn compares the question and the answer with the sentences of its sources (coverage, the extractive tier,
the claim check). Embedding those at ingest, once, instead of on the first turn that retrieves a chunk, takes
the slowest step off the answer path. Sentences are embedded shortest first, so a batch pads little.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from backend.grounding.sentences import TextEmbedder, sentence_texts
from backend.retrieval.packed_vectors import pack_vectors
from backend.stages import EmbeddedChunk

_BATCH = 64


def with_sentence_vectors(embedded: Sequence[EmbeddedChunk], embedder: TextEmbedder) -> list[EmbeddedChunk]:
    """The same chunks, each carrying its packed sentence vectors ("" for a chunk without sentences)."""
    per_chunk = [sentence_texts(item.chunk.text) for item in embedded]
    unique = sorted({text for texts in per_chunk for text in texts}, key=len)
    vectors = dict(zip(unique, embedder.embed_documents(unique, batch_size=_BATCH), strict=True)) if unique else {}
    return [
        dataclasses.replace(item, sentence_vectors=pack_vectors([vectors[text] for text in texts]) if texts else "")
        for item, texts in zip(embedded, per_chunk, strict=True)
    ]
