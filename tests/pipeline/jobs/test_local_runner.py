"""The job steps in this process (`jobs.engine: local`), and what needs no Temporal: job ids through the id gate,
the `jobs` CLI's refusals, the workflow module's sandbox-safe imports (rows J6, J7, J9)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from backend.errors import LorechatError
from backend.retrieval.embedder import Embedder
from backend.retrieval.search import Retriever
from backend.retrieval.stores.edge import EdgeStore
from backend.settings import ChunkingSettings, IndexSettings, JobsSettings, RetrievalSettings, Settings
from pipeline.jobs.client import require_shared_index
from pipeline.jobs.model import WorkItem, channel_job_id, ingest_job_id, require_job_id
from pipeline.jobs.temporal_activities import batches
from tests.conftest import REPO, indexer
from tests.pipeline.jobs.test_workers import POISON, write_corpus


def test_a_poison_document_is_a_report_line_in_the_local_runner_too(
    tmp_path: Path, shared_embedder: Embedder, monkeypatch: pytest.MonkeyPatch
):
    store = EdgeStore(tmp_path / "index", hnsw_ef=128)
    retriever = Retriever(embedder=shared_embedder, store=store, settings=RetrievalSettings())
    embed = Retriever.embed_chunks

    def poisoned(self: Retriever, chunks, *, batch_size=None):  # type: ignore[no-untyped-def]
        if any(POISON in chunk.text for chunk in chunks):
            raise ValueError("the model cannot take this text")
        return embed(self, chunks, batch_size=batch_size)

    monkeypatch.setattr(Retriever, "embed_chunks", poisoned)
    corpus = write_corpus(tmp_path / "content", creators=2, documents=3, poison=POISON)
    try:
        runner = indexer(retriever, tmp_path / "data", chunking=ChunkingSettings(size_tokens=64, overlap_tokens=8))
        report = runner.ingest([corpus])
        indexed = set(store.documents())
    finally:
        store.close()

    assert (report.added, [f.source for f in report.failed]) == (5, ["baker-1/note-2.md"])
    assert "could not be embedded" in report.failed[0].error
    assert "baker-1/note-2.md" not in indexed and len(indexed) == 5
    listed = {d for entry in runner._catalog().database.run(_catalog_docs) for d in entry}
    assert listed == indexed  # the catalog lists what the index holds


async def _catalog_docs(sessions):  # type: ignore[no-untyped-def]
    from backend.storage import catalog_store

    catalog = (await catalog_store.load_catalog(sessions))[1]
    return [list(entry.documents) for entry in catalog.creators.values()]


def test_batches_hold_about_the_chunks_asked_spread_evenly():
    items = [WorkItem("a", "/r", f"/r/{i}.md", f"a/{i}.md", False) for i in range(10)]

    def sizes(estimates: list[int], chunks: int, documents: int) -> list[list[int]]:
        return [[estimates[items.index(i)] for i in batch] for batch in batches(items, estimates, chunks=chunks,
                                                                               documents=documents)]  # fmt: skip

    assert sizes([4] * 10, 16, 64) == [[4, 4, 4], [4, 4, 4, 4], [4, 4, 4]]  # 40 chunks: 3 batches, evened out
    assert sizes([4] * 10, 256, 64) == [[4] * 10]  # a small job is one batch
    assert sizes([4] * 10, 256, 4) == [[4, 4, 4], [4, 4, 4, 4], [4, 4, 4]]  # at most 4 documents each
    assert [len(b) for b in batches(items, [50, *[1] * 8, 50], chunks=40, documents=64)] == [1, 8, 1]
    assert batches([], [], chunks=256, documents=64) == []
    # Two workers polling: 3 batches would leave one writing the last alone; 4 of 10 chunks keep both busy.
    assert [len(b) for b in batches(items, [4] * 10, chunks=16, documents=64, slots=2)] == [3, 2, 3, 2]
    assert len(batches(items, [4] * 10, chunks=256, documents=64, slots=2)) == 1  # too small to split usefully


def test_job_ids_come_from_the_work_and_pass_the_id_gate():
    assert ingest_job_id(["/a", "/b"], None) == ingest_job_id(["/b", "/a"], None)  # the same request, the same id
    assert ingest_job_id(["/a"], "ada") == "ingest:ada"
    assert channel_job_id(7) == "channel:7"
    for good in ("ingest:ada", "ingest:0123456789abcdef", "channel:7"):
        assert require_job_id(good) == good
    for bad in ("ingest:Ada", "ingest:", "channel:0", "channel:99999999999", "other:1", "ingest:ada\x00", "x" * 5000,
                "channel:7\n", None, 7):  # fmt: skip
        with pytest.raises(LorechatError, match="No such job"):
            require_job_id(bad)


def test_temporal_with_the_edge_index_is_refused_in_settings_checks():
    with pytest.raises(LorechatError, match="an embedded Edge shard admits one process"):
        require_shared_index(Settings(jobs=JobsSettings(engine="temporal")))
    require_shared_index(Settings(jobs=JobsSettings(engine="local")))
    require_shared_index(Settings(jobs=JobsSettings(engine="temporal"), index=IndexSettings(kind="server", url="x")))


def _lorechat(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    full = {**os.environ, "LORECHAT_CONFIG": str(REPO / "config.yaml"), **env}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=REPO, env=full, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_the_jobs_cli_refuses_bad_ids_and_says_when_jobs_are_local(tmp_path: Path):
    local = _lorechat("jobs", "list", LORECHAT_DATA_DIR=str(tmp_path))
    assert local.returncode == 2 and "jobs.engine is 'local'" in local.stderr
    temporal = {
        "LORECHAT_DATA_DIR": str(tmp_path), "LORECHAT_JOBS__ENGINE": "temporal", "LORECHAT_INDEX__KIND": "server",
        "LORECHAT_INDEX__URL": "http://127.0.0.1:9", "LORECHAT_JOBS__TEMPORAL_ADDRESS": "127.0.0.1:9",
    }  # fmt: skip
    shown = _lorechat("jobs", "show", "ingest:\x1b[31mred", **temporal)
    assert shown.returncode == 2 and "No such job" in shown.stderr and "\x1b" not in shown.stderr
    cancelled = _lorechat("jobs", "cancel", "x" * 5000, **temporal)
    assert cancelled.returncode == 2 and "No such job" in cancelled.stderr
    unreachable = _lorechat("jobs", "list", **temporal)
    assert unreachable.returncode == 3 and "cannot be reached" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def test_the_workflow_module_imports_nothing_heavy():
    """Temporal re-imports workflow modules in its sandbox on every worker: only its API and the job model."""
    tree = ast.parse((REPO / "pipeline" / "jobs" / "workflows.py").read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module} | {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    assert imported <= {"__future__", "asyncio", "datetime", "typing", "temporalio", "temporalio.common",
                        "temporalio.exceptions", "temporalio.workflow", "pipeline.jobs.model"}  # fmt: skip
    model = ast.parse((REPO / "pipeline" / "jobs" / "model.py").read_text(encoding="utf-8"))
    first_party = {n.module for n in ast.walk(model) if isinstance(n, ast.ImportFrom) and n.module}
    assert first_party <= {"__future__", "hashlib", "re", "dataclasses", "typing", "backend.errors", "backend.ids"}


def test_temporal_is_known_in_the_jobs_package_only():
    offenders = []
    for path in sorted((REPO / "pipeline").rglob("*.py")) + sorted((REPO / "backend").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if ("import temporalio" in text or "from temporalio" in text) and "pipeline/jobs/" not in path.as_posix():
            offenders.append(path.relative_to(REPO).as_posix())
    assert offenders == []


def test_leaving_without_teardown_is_for_the_program_never_for_callers_of_main():
    """After Temporal, `lorechat` exits without interpreter teardown (temporalio/sdk-python#300); that is `run`'s
    doing, the program's entry point. `main` itself still raises SystemExit, so a caller in its own process (click's
    CliRunner, this test run) is never ended by it."""
    from click.testing import CliRunner

    from pipeline.cli import main
    from pipeline.jobs import client

    client.connected_once.set()
    try:
        result = CliRunner().invoke(main, ["--version"])
    finally:
        client.connected_once.clear()
    assert result.exit_code == 0 and "version" in result.output  # and this process is still here to say so

    # The program: the exit code and what it printed are kept.
    program = (
        "import sys; from pipeline.jobs import client; client.connected_once.set(); "
        "sys.argv = ['lorechat', '--no-such-option']; from pipeline.cli import run; run()"
    )
    done = subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "No such option" in done.stderr, (done.returncode, done.stderr)
