"""Test hooks for `lorechat worker` processes started by tests/pipeline/jobs (on PYTHONPATH there only).

LORECHAT_TEST_SLOW_SECONDS: each embedding call of a batch's chunks sleeps this long first, so a test can act while
a batch is in flight (kill its worker, cancel its job, restart Temporal). LORECHAT_TEST_POISON: a chunk whose text
holds this word makes the embedding call raise, as a document the model cannot take would.
LORECHAT_TEST_WRITE_CHUNKS: chunks embedded and written together (256 in production), so a small batch is written
in several steps and reports its position between them.
"""

from __future__ import annotations

import os
import time

_SLOW = float(os.environ.get("LORECHAT_TEST_SLOW_SECONDS") or 0)
_POISON = os.environ.get("LORECHAT_TEST_POISON") or ""
_WRITE_CHUNKS = int(os.environ.get("LORECHAT_TEST_WRITE_CHUNKS") or 0)

if _WRITE_CHUNKS:
    import pipeline.jobs.activities

    pipeline.jobs.activities.WRITE_BATCH_CHUNKS = _WRITE_CHUNKS

if _SLOW or _POISON:
    from backend.retrieval.search import Retriever

    _embed_chunks = Retriever.embed_chunks

    def embed_chunks(self, chunks, *, batch_size=None):  # type: ignore[no-untyped-def]
        if _POISON and any(_POISON in chunk.text for chunk in chunks):
            raise ValueError(f"the model cannot take this text ({_POISON})")
        if _SLOW:
            time.sleep(_SLOW)
        return _embed_chunks(self, chunks, batch_size=batch_size)

    Retriever.embed_chunks = embed_chunks  # type: ignore[method-assign]
