"""Ingest jobs on a real Temporal server with real `lorechat worker` processes, writing one index through the real
`server` adapter over HTTP (the Qdrant double) and one PostgreSQL database (rows J1-J8 in docs/reliability.md).

Every job's outcome is checked against a single-process ingest of the same corpus (`jobs.engine: local`): the same
point ids with the same payloads and vectors, the same catalog, each document counted once in the run report.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from backend.grounding.sentences import sentence_texts
from backend.retrieval.embedder import Embedder
from backend.retrieval.packed_vectors import unpack_vectors
from backend.retrieval.search import Retriever
from backend.retrieval.stores.server import ServerStore
from backend.settings import DatabaseSettings, IndexSettings, RedisSettings, RetrievalSettings, Settings
from pipeline.catalog_update import read_catalog
from pipeline.curator_db import OwnEngine
from pipeline.indexer import Indexer
from pipeline.jobs.client import Jobs
from tests.pipeline.jobs.conftest import CHUNK_TOKENS, OVERLAP_TOKENS, Cluster, TemporalServer

pytestmark = [pytest.mark.services, pytest.mark.timeout(240)]

POISON = "zorblaxpoison"
# Two batches of 9 documents, each written in steps of 4 chunks taking a second or more: a batch is in flight (and
# has reported a position, which reaches the server a heartbeat later) for long enough to act on it mid-way.
SLOW_BATCHES = {
    "LORECHAT_TEST_SLOW_SECONDS": "1.0",
    "LORECHAT_TEST_WRITE_CHUNKS": "4",
    "LORECHAT_JOBS__BATCH_DOCUMENTS": "9",
}
WORDS = (
    "sourdough starter hydration crumb oven steam crust proofing gluten salt flour rye spelt levain banneton "
    "scoring lame autolyse fermentation temperature schedule shaping bench rest tension"
).split()


def write_corpus(root: Path, *, creators: int = 3, documents: int = 6, poison: str | None = None) -> Path:
    """`creators` creator folders of `documents` markdown notes each, every note a few paragraphs of its own."""
    for c in range(creators):
        folder = root / f"baker-{c}"
        folder.mkdir(parents=True)
        (folder / "creator.yaml").write_text(f"name: Baker {c}\nbio: Bakes bread number {c}.\n", encoding="utf-8")
        for d in range(documents):
            paragraphs = []
            for p in range(4):
                words = [WORDS[(c * 7 + d * 5 + p * 3 + i) % len(WORDS)] for i in range(40)]
                paragraphs.append(f"Note {d} of baker {c}, part {p}: " + " ".join(words) + ".")
            if poison is not None and (c, d) == (1, 2):
                paragraphs.append(f"This paragraph holds {poison}, which the model cannot take.")
            text = f"---\ntitle: Note {d} of baker {c}\n---\n# Note {d}\n\n" + "\n\n".join(paragraphs) + "\n"
            (folder / f"note-{d}.md").write_text(text, encoding="utf-8")
    return root


def reference(cluster: Cluster, corpus: Path, embedder: Embedder, tmp: Path) -> dict[str, Any]:
    """A single-process ingest of `corpus` (`jobs.engine: local`) into a collection and database of its own."""
    settings = Settings(
        data_dir=tmp / "reference",
        index=IndexSettings(kind="server", url=cluster.index_url, collection="reference"),
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp / 'reference.db'}"),
        redis=RedisSettings(url=""),
        chunking={"size_tokens": CHUNK_TOKENS, "overlap_tokens": OVERLAP_TOKENS},
    )
    store = ServerStore(cluster.index_url, None, "reference", hnsw_ef=128, timeout=10)
    try:
        retriever = Retriever(embedder=embedder, store=store, settings=RetrievalSettings())
        report = Indexer.from_settings(settings, retriever).ingest([corpus])
    finally:
        store.close()
    return {"report": report.as_json(), "points": points(cluster.index_url, "reference"), "catalog": catalog(settings)}


def points(url: str, collection: str) -> dict[str, tuple[dict[str, Any], np.ndarray]]:
    client = QdrantClient(url=url, timeout=30, check_compatibility=False)
    found: dict[str, tuple[dict[str, Any], np.ndarray]] = {}
    offset = None
    while True:
        page, offset = client.scroll(collection, limit=256, offset=offset, with_payload=True, with_vectors=True)
        for point in page:
            vectors = point.vector
            assert isinstance(vectors, dict)
            found[str(point.id)] = (dict(point.payload or {}), np.asarray(vectors["dense"], dtype=np.float32))
        if offset is None:
            break
    client.close()
    return found


def catalog(settings: Settings) -> dict[str, Any]:
    listed = read_catalog(OwnEngine(settings), settings.data_dir)
    return {
        slug: {"creator": entry.creator, "documents": dict(entry.documents)} for slug, entry in listed.creators.items()
    }


def assert_same_index(
    got: dict[str, tuple[dict[str, Any], np.ndarray]], want: dict[str, tuple[dict[str, Any], np.ndarray]]
) -> None:
    """Same point ids; payloads equal (sentence vectors and dense vectors to float tolerance: the workers' model
    runs on one thread, the reference on all, and batches differ)."""
    assert sorted(got) == sorted(want)
    for point_id, (payload, dense) in want.items():
        their_payload, their_dense = got[point_id]
        ours = {k: v for k, v in payload.items() if k != "sentence_vectors"}
        theirs = {k: v for k, v in their_payload.items() if k != "sentence_vectors"}
        assert theirs == ours, point_id
        assert float(np.dot(dense, their_dense)) > 0.9999
        if "sentence_vectors" in payload:
            rows = len(sentence_texts(payload["text"]))
            a = unpack_vectors(payload["sentence_vectors"], rows)
            b = unpack_vectors(their_payload["sentence_vectors"], rows)
            assert a is not None and b is not None and a.shape == b.shape
            assert float(np.min(np.sum(a * b, axis=-1))) > 0.999


def documents_of(found: dict[str, tuple[dict[str, Any], np.ndarray]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for payload, _ in found.values():
        counts[payload["document_id"]] = counts.get(payload["document_id"], 0) + 1
    return counts


def ingest(cluster: Cluster, corpus: Path, *args: str, **env: str) -> tuple[int, dict[str, Any], str]:
    done = cluster.lorechat("ingest", str(corpus), "--json", *args, **env)
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}, done.stderr


def job_report(cluster: Cluster, job_id: str) -> dict[str, Any]:
    view = Jobs(cluster.settings()).show(job_id)
    assert view.report is not None, view
    return view.report


def wait_for(condition: Callable[[], Any], *, seconds: float = 120, what: str = "") -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def pending_batches(cluster: Cluster, job_id: str) -> list[dict[str, Any]]:
    """The job's batch activities in flight: attempt, worker, and the position their last heartbeat reported."""
    import asyncio

    from temporalio.client import Client

    async def read() -> list[dict[str, Any]]:
        client = await Client.connect(cluster.temporal_address)
        description = await client.get_workflow_handle(job_id).describe()
        found = []
        for pending in description.raw_description.pending_activities:
            if pending.activity_type.name != "lorechat.write_batch":
                continue
            details = [json.loads(p.data) for p in pending.heartbeat_details.payloads]
            found.append(
                {
                    "attempt": pending.attempt,
                    "worker": pending.last_worker_identity,
                    "next": details[0].get("next", 0) if details and isinstance(details[0], dict) else 0,
                }
            )
        return found

    return asyncio.run(read())


def part_written(cluster: Cluster, job_id: str) -> dict[str, Any] | None:
    """A batch in flight whose last heartbeat says it wrote some of its documents, and not most of them."""
    return next((b for b in pending_batches(cluster, job_id) if 1 <= b["next"] <= 5 and b["worker"]), None)


def started_job(cluster: Cluster, corpus: Path, **env: str) -> dict[str, Any]:
    done = cluster.lorechat("ingest", str(corpus), "--detach", **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# ---- J1: several workers, one index ------------------------------------------------------------------------------


def test_three_workers_write_what_one_process_writes(cluster: Cluster, shared_embedder: Embedder, tmp_path: Path):
    corpus = write_corpus(tmp_path / "content")
    want = reference(cluster, corpus, shared_embedder, tmp_path)
    cluster.start_workers(3, LORECHAT_TEST_SLOW_SECONDS="0.3")

    code, report, stderr = ingest(cluster, corpus)

    assert code == 0, stderr
    assert report == want["report"] == {"added": 18, "updated": 0, "unchanged": 0, "pruned": 0, "failed": []}
    assert_same_index(points(cluster.index_url, "lorechat"), want["points"])
    assert catalog(cluster.settings()) == want["catalog"]
    job = Jobs(cluster.settings()).list()[0]
    assert (job.status, job.documents_done, job.documents_total) == ("completed", 18, 18)  # each counted once
    recorded = job_report(cluster, job.id)
    assert recorded["added"] == 18 and recorded["batches"] == 9
    assert len(recorded["workers"]) >= 2  # the batches spread over the workers

    # Again: the hash gate finds nothing to write.
    code, again, _ = ingest(cluster, corpus)
    assert code == 0 and again == {"added": 0, "updated": 0, "unchanged": 18, "pruned": 0, "failed": []}


# ---- J2: a worker killed mid-batch -------------------------------------------------------------------------------


def test_a_worker_killed_mid_batch_is_replaced_nothing_lost_or_doubled(
    cluster: Cluster, shared_embedder: Embedder, tmp_path: Path
):
    corpus = write_corpus(tmp_path / "content")
    want = reference(cluster, corpus, shared_embedder, tmp_path)
    slow = SLOW_BATCHES
    workers = cluster.start_workers(2, **slow)
    job = started_job(cluster, corpus, **slow)  # the batches' size is the starter's setting

    # A batch that has written part of its documents (its heartbeat says so): kill its worker, no cleanup.
    batch = wait_for(lambda: part_written(cluster, job["job"]), what="a batch part-written")
    victim = next(w for w in workers if batch["worker"].endswith(f":{w.pid}"))
    os.kill(victim.pid, signal.SIGKILL)

    report = Jobs(cluster.settings()).wait(job["job"], job["run"])
    assert report["added"] == 18 and report["failed"] == []
    assert report["retries"] >= 1  # the killed batch ran again, on the other worker
    got = points(cluster.index_url, "lorechat")
    assert_same_index(got, want["points"])
    assert documents_of(got) == documents_of(want["points"])
    assert catalog(cluster.settings()) == want["catalog"]


def test_a_worker_stopped_with_sigterm_hands_its_batch_back(
    cluster: Cluster, shared_embedder: Embedder, tmp_path: Path
):
    corpus = write_corpus(tmp_path / "content")
    want = reference(cluster, corpus, shared_embedder, tmp_path)
    slow = SLOW_BATCHES
    workers = cluster.start_workers(2, **slow)
    job = started_job(cluster, corpus, **slow)  # the batches' size is the starter's setting
    batch = wait_for(lambda: part_written(cluster, job["job"]), what="a batch part-written")
    stopping = next(w for w in workers if batch["worker"].endswith(f":{w.pid}"))
    stopping.send_signal(signal.SIGTERM)

    assert stopping.wait(timeout=30) == 0  # out well within jobs.shutdown_grace_seconds, cleanly
    report = Jobs(cluster.settings()).wait(job["job"], job["run"])
    assert report["added"] == 18 and report["failed"] == [] and report["retries"] >= 1
    assert_same_index(points(cluster.index_url, "lorechat"), want["points"])
    assert catalog(cluster.settings()) == want["catalog"]


# ---- J3: Temporal restarted mid-job ------------------------------------------------------------------------------


def test_the_job_resumes_after_temporal_restarts(cluster_factory: Callable[..., Cluster], shared_embedder, tmp_path):
    server = TemporalServer(tmp_path / "own-temporal").start()
    try:
        cluster = cluster_factory(server.address)
        corpus = write_corpus(tmp_path / "content")
        want = reference(cluster, corpus, shared_embedder, tmp_path)
        cluster.start_workers(2, LORECHAT_TEST_SLOW_SECONDS="0.5", LORECHAT_JOBS__PARALLEL_BATCHES="2")
        job = started_job(cluster, corpus)
        jobs = Jobs(cluster.settings())
        wait_for(lambda: jobs.show(job["job"]).documents_done >= 2, what="a batch written")

        server.stop()
        time.sleep(2)
        server.start()

        report = jobs.wait(job["job"], job["run"])
        assert report["added"] == 18 and report["failed"] == []
        assert_same_index(points(cluster.index_url, "lorechat"), want["points"])
        assert catalog(cluster.settings()) == want["catalog"]
        assert all(w.poll() is None for w in cluster.workers)  # the workers rode it out
    finally:
        server.stop()


# ---- J4: a second start joins ------------------------------------------------------------------------------------


def test_a_second_start_joins_the_running_job(cluster: Cluster, tmp_path: Path):
    corpus = write_corpus(tmp_path / "content", creators=2, documents=4)
    cluster.start_workers(1, LORECHAT_TEST_SLOW_SECONDS="0.5")
    first = started_job(cluster, corpus)
    second = started_job(cluster, corpus)

    assert (first["joined"], second["joined"]) == (False, True)
    assert (second["job"], second["run"]) == (first["job"], first["run"])
    report = Jobs(cluster.settings()).wait(first["job"], first["run"])
    assert report["added"] == 8 and report["failed"] == []
    jobs = Jobs(cluster.settings()).list()
    assert [job.id for job in jobs] == [first["job"]]  # one job ran, not two


# ---- J5: cancel stops between batches ----------------------------------------------------------------------------


def test_cancel_stops_between_batches_and_leaves_index_and_catalog_agreeing(
    cluster: Cluster, shared_embedder: Embedder, tmp_path: Path
):
    corpus = write_corpus(tmp_path / "content")
    want = reference(cluster, corpus, shared_embedder, tmp_path)
    cluster.start_workers(1, LORECHAT_TEST_SLOW_SECONDS="1.5", LORECHAT_JOBS__PARALLEL_BATCHES="1")
    job = started_job(cluster, corpus)
    jobs = Jobs(cluster.settings())
    wait_for(lambda: jobs.show(job["job"]).documents_done >= 2, what="a batch written")

    cancelled = cluster.lorechat("jobs", "cancel", job["job"], "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["state"] == "cancelling"

    view = wait_for(lambda: (v := jobs.show(job["job"])).status != "running" and v, what="the job to end")
    assert view.status == "cancelled"
    shown = cluster.lorechat("jobs", "show", job["job"], "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["report"] == view.report
    assert view.report is not None and view.report["cancelled"] is True
    written = view.report["added"]
    assert 2 <= written < 18 and written % 2 == 0  # whole batches only
    got = points(cluster.index_url, "lorechat")
    indexed = documents_of(got)
    assert len(indexed) == written
    reference_counts = documents_of(want["points"])
    assert all(count == reference_counts[doc] for doc, count in indexed.items())  # no half-written document
    listed = {doc for entry in catalog(cluster.settings()).values() for doc in entry["documents"]}
    assert listed == set(indexed)  # the catalog lists what the index holds, no more, no less


# ---- J6: a poison document fails alone ---------------------------------------------------------------------------


def test_a_poison_document_fails_alone_with_a_report_line(cluster: Cluster, tmp_path: Path):
    corpus = write_corpus(tmp_path / "content", poison=POISON)
    cluster.start_workers(2, LORECHAT_TEST_POISON=POISON)

    code, report, stderr = ingest(cluster, corpus)

    assert code == 1, stderr  # a failed document: exit 1, as for a bad file
    assert report["added"] == 17
    assert len(report["failed"]) == 1
    assert report["failed"][0]["source"] == "baker-1/note-2.md"
    assert "could not be embedded" in report["failed"][0]["error"]
    indexed = documents_of(points(cluster.index_url, "lorechat"))
    assert len(indexed) == 17 and "baker-1/note-2.md" not in indexed
    job = Jobs(cluster.settings()).list()[0]
    assert job.retries == 0  # a report line, not a retry storm


# ---- J7: the embedded index is refused ---------------------------------------------------------------------------


def test_temporal_with_the_embedded_index_is_refused_with_a_clear_message(tmp_path: Path, cluster: Cluster):
    edge = {"LORECHAT_INDEX__KIND": "edge", "LORECHAT_INDEX__URL": ""}
    worker = cluster.lorechat("worker", **edge)
    assert worker.returncode == 2
    assert "index.kind is 'edge'" in worker.stderr and "index.kind: server" in worker.stderr
    assert "Traceback" not in worker.stderr
    corpus = write_corpus(tmp_path / "content", creators=1, documents=1)
    ingested = cluster.lorechat("ingest", str(corpus), **edge)
    assert ingested.returncode == 2 and "an embedded Edge shard admits one process" in ingested.stderr
