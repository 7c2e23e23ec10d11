"""Issue 15, item 4: any sentence-transformers model directory (or its ONNX export) works end to end, and its own
window is what chunks are fitted to."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from backend.errors import ErrorCode, LorechatError
from backend.retrieval.embedder import Embedder, bundled_model_path
from backend.retrieval.model_files import model_cache_dir
from backend.retrieval.search import Retriever, chunking_id, embed_text
from backend.retrieval.stores.edge import SIDECAR, EdgeStore
from backend.settings import ChunkingSettings, EmbeddingSettings, RetrievalSettings
from pipeline.eval_data import load_content
from pipeline.indexer import Indexer
from tests.conftest import DEMO_CONTENT


@pytest.mark.slow
def test_another_model_directory_is_indexed_within_its_own_window(tmp_path: Path, shared_embedder: Embedder) -> None:
    # A model directory whose window is 128 tokens (the bundled weights with another max_seq_length).
    model = tmp_path / "narrow-minilm"
    shutil.copytree(bundled_model_path(), model)
    config = json.loads((model / "sentence_bert_config.json").read_text())
    (model / "sentence_bert_config.json").write_text(json.dumps({**config, "max_seq_length": 128}))
    embedder = Embedder(EmbeddingSettings(model_path=str(model), backend="torch"))
    assert (embedder.embedder_id, embedder.max_tokens) == ("narrow-minilm/torch", 128)

    store = EdgeStore(tmp_path / "index", hnsw_ef=128)
    retriever = Retriever(embedder=embedder, store=store, settings=RetrievalSettings(k=3))
    indexer = Indexer(retriever=retriever, chunking=ChunkingSettings(), catalog=None)
    written = indexer.write_documents(load_content(DEMO_CONTENT))
    chunks = [hit for hit in retriever.search("hydration for a first sourdough loaf", k=50)]
    assert written > 83 and chunks  # more, smaller chunks than the 256-token window gives (83)
    for hit in chunks:
        assert embedder.count_tokens(embed_text(hit)) <= 128  # type: ignore[arg-type]
    assert json.loads((tmp_path / "index" / SIDECAR).read_text())["chunking"] == chunking_id(128)
    store.close()

    # The bundled model (another model, another window) refuses this index with the way out.
    with pytest.raises(LorechatError) as caught:
        Retriever(
            embedder=shared_embedder, store=EdgeStore(tmp_path / "index", hnsw_ef=128), settings=RetrievalSettings()
        )
    assert caught.value.code is ErrorCode.index_mismatch and "re-ingest" in caught.value.message


def test_a_model_directory_that_ships_its_onnx_export_is_used_as_is(tmp_path: Path, shared_embedder: Embedder) -> None:
    # The machine's export of the bundled model (scripts/setup made it) is itself such a directory.
    exported = model_cache_dir(EmbeddingSettings()) / "all-MiniLM-L6-v2-onnx"
    assert (exported / "onnx" / "model.onnx").is_file(), "scripts/setup exports the bundled model"
    cache = tmp_path / "cache"
    embedder = Embedder(EmbeddingSettings(model_path=str(exported), backend="onnx", cache_dir=str(cache)))
    # The fp32 model was not exported again; only the questions' int8 twin was made from it, in the cache.
    assert embedder.query_model_file is not None
    assert [p.name for p in cache.iterdir()] == [embedder.query_model_file.parents[1].name]
    assert embedder.max_tokens == 256
    text = "Preheat the stone for an hour."
    assert float(embedder.embed_query(text) @ shared_embedder.embed_query(text)) > 0.9999
