"""Edge-only behaviour: persistence across opens, the embedder record, and the one-process-per-shard lock."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from backend.errors import ErrorCode, LorechatError
from backend.retrieval.embedder import Embedder
from backend.retrieval.stores.edge import SIDECAR, EdgeStore
from backend.stages import EmbeddedChunk

ROOT = Path(__file__).resolve().parents[3]

# Opens the shard from another process and prints the error code and message it gets, or "opened".
OPEN_FROM_ANOTHER_PROCESS = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from backend.errors import LorechatError
    from backend.retrieval.stores.edge import EdgeStore
    try:
        store = EdgeStore(Path(sys.argv[1]), hnsw_ef=64)
        store.ensure_collection(dense_size=int(sys.argv[2]), embedder_id=sys.argv[3])
    except LorechatError as exc:
        print(exc.code.value)
        print(exc.message)
    else:
        print("opened", sum(c.chunks for c in store.counts()))
        store.close()
    """
)


def open_elsewhere(path: Path, embedder: Embedder) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", OPEN_FROM_ANOTHER_PROCESS, str(path), str(embedder.dimension), embedder.embedder_id],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip().splitlines()


def test_second_process_gets_index_locked_then_opens_after_close(
    tmp_path: Path, embedder: Embedder, embedded_corpus: list[EmbeddedChunk]
) -> None:
    path = tmp_path / "index"
    store = EdgeStore(path, hnsw_ef=64)
    store.ensure_collection(dense_size=embedder.dimension, embedder_id=embedder.embedder_id)
    store.upsert(embedded_corpus)
    try:
        code, message = open_elsewhere(path, embedder)
        assert code == "index_locked"
        assert str(path) in message
        assert "lorechat serve" in message
        assert "WouldBlock" not in message
        # The refused process touched nothing: the holder still writes (an engine that got as far as its own lock
        # had removed the holder's tracker journals, and every later flush failed).
        document = embedded_corpus[0].chunk.document_id
        store.delete_documents([document])
        store.upsert([item for item in embedded_corpus if item.chunk.document_id == document])
        assert store.points() == len(embedded_corpus)
    finally:
        store.close()
    assert open_elsewhere(path, embedder) == ["opened " + str(len(embedded_corpus))]


def test_data_and_embedder_record_survive_reopen(
    tmp_path: Path, embedder: Embedder, embedded_corpus: list[EmbeddedChunk]
) -> None:
    path = tmp_path / "index"
    store = EdgeStore(path, hnsw_ef=64)
    store.ensure_collection(dense_size=embedder.dimension, embedder_id=embedder.embedder_id)
    store.upsert(embedded_corpus)
    store.close()
    record = json.loads((path / SIDECAR).read_text())
    assert record["embedder_id"] == embedder.embedder_id
    assert record["dense_size"] == embedder.dimension

    reopened = EdgeStore(path, hnsw_ef=64)
    try:
        with pytest.raises(LorechatError) as caught:
            reopened.ensure_collection(dense_size=embedder.dimension, embedder_id="all-MiniLM-L6-v2/onnx-int8")
        assert caught.value.code is ErrorCode.index_mismatch
        assert embedder.embedder_id in caught.value.message
        assert "all-MiniLM-L6-v2/onnx-int8" in caught.value.message
        # The other fp32 runtime gives the same vectors: it opens the index (no re-ingest to switch).
        other = "all-MiniLM-L6-v2/torch" if embedder.embedder_id.endswith("/onnx") else "all-MiniLM-L6-v2/onnx"
        reopened.ensure_collection(dense_size=embedder.dimension, embedder_id=other)
        reopened.ensure_collection(dense_size=embedder.dimension, embedder_id=embedder.embedder_id)
        assert len(reopened.documents()) == len({item.chunk.document_id for item in embedded_corpus})
    finally:
        reopened.close()


def test_shard_without_record_is_refused(tmp_path: Path, embedder: Embedder) -> None:
    path = tmp_path / "index"
    store = EdgeStore(path, hnsw_ef=64)
    store.ensure_collection(dense_size=embedder.dimension, embedder_id=embedder.embedder_id)
    store.close()
    (path / SIDECAR).unlink()
    reopened = EdgeStore(path, hnsw_ef=64)
    try:
        with pytest.raises(LorechatError) as caught:
            reopened.ensure_collection(dense_size=embedder.dimension, embedder_id=embedder.embedder_id)
        assert caught.value.code is ErrorCode.index_mismatch
    finally:
        reopened.close()


def test_missing_index_reads_as_empty(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "never-created", hnsw_ef=64)
    assert store.documents() == {}
    assert store.counts() == []
    assert not (tmp_path / "never-created").exists()
    store.close()


def test_an_index_path_that_cannot_be_a_folder_is_a_clear_error(tmp_path: Path, embedder: Embedder) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    store = EdgeStore(blocker / "index", hnsw_ef=64)
    with pytest.raises(LorechatError) as caught:
        store.ensure_collection(dense_size=embedder.dimension, embedder_id=embedder.embedder_id)
    assert caught.value.code is ErrorCode.index_unavailable
    assert str(blocker / "index") in caught.value.message
