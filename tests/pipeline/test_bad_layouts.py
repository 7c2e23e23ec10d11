"""Bad content layouts (I9): a clear line in the ingest report, an exit code, never a traceback.

Regression tests for issue 9 (items 6 and 7): a folder with sub-folders but no creator.yaml raised
CreatorError through the CLI, and symbolic link loops vanished from the report.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from backend.retrieval.embedder import Embedder
from backend.retrieval.search import Retriever
from backend.retrieval.stores.edge import EdgeStore
from backend.settings import ChunkingSettings, RetrievalSettings
from pipeline.cli import main
from pipeline.ingest import IngestReport
from tests.conftest import DEMO_CONTENT, indexer


@pytest.fixture
def index(tmp_path: Path, shared_embedder: Embedder) -> Retriever:
    store = EdgeStore(tmp_path / "index", hnsw_ef=128)
    yield Retriever(embedder=shared_embedder, store=store, settings=RetrievalSettings())
    store.close()


def run(paths: list[Path], retriever: Retriever, data_dir: Path) -> IngestReport:
    chunking = ChunkingSettings(size_tokens=64, overlap_tokens=8)
    return indexer(retriever, data_dir, chunking=chunking).ingest(paths)


def no_creators(tmp_path: Path) -> Path:
    """Sub-folders with content, but not one creator.yaml anywhere."""
    root = tmp_path / "not-content"
    (root / "ada").mkdir(parents=True)
    (root / "ada" / "notes.md").write_text("# Notes\n\nRye ferments fast.\n", encoding="utf-8")
    (root / "misc").mkdir()
    return root


def test_i9_a_folder_without_creator_folders_is_a_report_line_not_a_creator_error(
    tmp_path: Path, index: Retriever
) -> None:
    root = no_creators(tmp_path)
    report = run([root, tmp_path / "missing", Path("bad\x00name")], index, tmp_path)
    failed = {f.source: f.error for f in report.failed}
    assert "no creator folders found" in failed[str(root)]
    assert not failed[str(root)].startswith(str(root))  # the path is the source, not repeated in the error
    assert set(failed) == {str(root), str(tmp_path / "missing"), "bad\\0name"}
    assert report.added == 0


def test_i9_a_folder_without_creator_folders_is_one_error_line_not_a_traceback(
    lorechat_env: Path, tmp_path: Path
) -> None:
    root = no_creators(tmp_path)
    plain = CliRunner().invoke(main, ["ingest", str(root)])
    as_json = CliRunner().invoke(main, ["ingest", str(root), "--json"])
    for result in (plain, as_json):
        assert result.exit_code == 1
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert "Traceback" not in result.output and "CreatorError" not in result.output
    assert json.loads(as_json.stdout)["failed"] == [
        {"source": str(root), "error": json.loads(as_json.stdout)["failed"][0]["error"]}
    ]
    error_lines = [line for line in plain.stderr.splitlines() if "no creator folders" in line]
    assert len(error_lines) == 1 and str(root) in error_lines[0]


def test_i9_eval_over_a_folder_without_creators_is_an_error_line(lorechat_env: Path, tmp_path: Path) -> None:
    root = no_creators(tmp_path)
    queries, qrels = tmp_path / "q.jsonl", tmp_path / "qrels.tsv"
    queries.write_text('{"_id": "q1", "text": "rye"}\n', encoding="utf-8")
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\tada/notes.md\t1\n", encoding="utf-8")
    args = ["eval", "--content", str(root), "--queries", str(queries), "--qrels", str(qrels)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "no creator folders" in result.stderr and "Traceback" not in result.output


def test_i9_symlink_loops_in_a_content_folder_are_reported(tmp_path: Path, index: Retriever) -> None:
    content = tmp_path / "content"
    creator = content / "hazel-marsh"
    shutil.copytree(DEMO_CONTENT / "hazel-marsh", creator)
    (creator / "sub").mkdir()
    os.symlink(".", creator / "sub" / "self")  # a folder linking to itself
    os.symlink("..", creator / "sub" / "up")  # ... and to its parent
    os.symlink("loop.md", creator / "loop.md")  # a link to itself: ELOOP
    os.symlink("gone.md", creator / "broken.md")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "x.md").write_text("# X\n\nelsewhere\n", encoding="utf-8")
    os.symlink(outside, creator / "linked")
    (outside / "real.md").write_text("# Real\n\nA linked file outside the folder is not read.\n", encoding="utf-8")
    os.symlink(outside / "real.md", creator / "real-link.md")
    (creator / "sub" / "inner.md").write_text("# Inner\n\nA link inside the folder is followed.\n", encoding="utf-8")
    os.symlink("sub/inner.md", creator / "inner-link.md")

    report = run([content], index, tmp_path)

    failed = {f.source: f.error for f in report.failed}
    assert set(failed) == {
        "hazel-marsh/sub/self",
        "hazel-marsh/sub/up",
        "hazel-marsh/loop.md",
        "hazel-marsh/broken.md",
        "hazel-marsh/linked",
        "hazel-marsh/real-link.md",
    }
    assert "loop" in failed["hazel-marsh/sub/self"] and "loop" in failed["hazel-marsh/sub/up"]
    assert "loop" in failed["hazel-marsh/loop.md"] and "broken" in failed["hazel-marsh/broken.md"]
    assert "folder" in failed["hazel-marsh/linked"]
    assert "outside the creator folder" in failed["hazel-marsh/real-link.md"]  # I10
    documents = index.store.documents("hazel-marsh")
    assert "hazel-marsh/real-link.md" not in documents and "hazel-marsh/inner-link.md" in documents
    assert report.added > 1
