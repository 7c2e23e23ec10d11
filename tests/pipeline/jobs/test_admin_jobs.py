"""The jobs table in /admin (J10): a real `lorechat serve` with `jobs.engine: temporal` lists the jobs its workers
run, from Temporal's visibility and each job's progress, and cancels a running one from a signed-in form; Temporal
out of reach is a note on the table, never a failed dashboard."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from backend.curation.dashboard import jobs_table
from backend.settings import JobsSettings
from pipeline.jobs.client import Jobs
from tests.conftest import REPO
from tests.pipeline.jobs.conftest import Cluster, free_port
from tests.pipeline.jobs.test_workers import started_job, wait_for, write_corpus

pytestmark = [pytest.mark.services, pytest.mark.timeout(240)]

TOKEN = "admin-token-for-the-jobs-table-0123456789"


@contextmanager
def served(cluster: Cluster) -> Iterator[str]:
    """`lorechat serve` of the cluster's deployment (the composition root passes it the jobs client)."""
    port = free_port()
    env = cluster.env(
        LORECHAT_SERVER__PORT=str(port),
        LORECHAT_AUTH__ADMIN_TOKEN=TOKEN,
        LORECHAT_LLM__TIERS='[{"name": "extractive", "kind": "extractive"}]',
    )
    log = (cluster.logs / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "serve"], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("lorechat serve did not start: " + (cluster.logs / "serve.log").read_text()[-3000:])
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def job_rows(page: str) -> dict[str, str]:
    """Job id → state, as the dashboard's jobs table shows them."""
    return dict(re.findall(r'data-testid="job" data-job-id="([^"]+)" data-state="([^"]+)"', page))


def test_j10_the_dashboard_lists_the_jobs_and_cancels_a_running_one(cluster: Cluster, tmp_path: Path):
    corpus = write_corpus(tmp_path / "content")
    cluster.start_workers(1, LORECHAT_TEST_SLOW_SECONDS="1.5", LORECHAT_JOBS__PARALLEL_BATCHES="1")
    job = started_job(cluster, corpus)
    jobs = Jobs(cluster.settings())

    with served(cluster) as base, httpx.Client(base_url=base) as curator, httpx.Client(base_url=base) as anonymous:
        # Nobody signed in sees no jobs and cancels none.
        assert anonymous.get("/admin").status_code == 303
        assert anonymous.post(f"/admin/jobs/{job['job']}/cancel", data={"csrf": "x"}).status_code == 401
        assert anonymous.get("/admin/export/jobs.json").status_code == 401

        assert curator.post("/admin/login", data={"token": TOKEN}).status_code == 303
        page = curator.get("/admin")
        assert page.status_code == 200
        rows = job_rows(page.text)
        assert list(rows) == [job["job"]] and rows[job["job"]] in ("planning", "writing")
        assert f'action="/admin/jobs/{job["job"]}/cancel"' in page.text  # a running job offers Cancel
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None

        # The export is the table: the same job, its progress as "done/total".
        exported = curator.get("/admin/export/jobs.json").json()
        assert [row["job"] for row in exported] == [job["job"]]
        assert exported[0]["kind"] == "ingest" and exported[0]["documents"].endswith("/18")

        # A form without the session's CSRF token, or naming a job id the jobs client never made, cancels nothing.
        assert curator.post(f"/admin/jobs/{job['job']}/cancel", data={"csrf": "forged"}).status_code == 403
        assert curator.post("/admin/jobs/ingest:..%2F..%2Fetc/cancel", data={"csrf": csrf[1]}).status_code == 404
        assert curator.post(f"/admin/jobs/{'x' * 5000}/cancel", data={"csrf": csrf[1]}).status_code == 404
        assert jobs.show(job["job"]).status == "running"

        wait_for(lambda: jobs.show(job["job"]).documents_done >= 2, what="a batch written")
        cancelled = curator.post(f"/admin/jobs/{job['job']}/cancel", data={"csrf": csrf[1]})
        assert cancelled.status_code == 303 and cancelled.headers["location"] == "/admin#jobs"
        view = wait_for(lambda: (v := jobs.show(job["job"])).status != "running" and v, what="the job to end")
        assert view.status == "cancelled"

        page = curator.get("/admin")
        assert job_rows(page.text) == {job["job"]: "cancelled"}
        assert f'action="/admin/jobs/{job["job"]}/cancel"' not in page.text  # nothing left to cancel
        # A second cancel of the ended job is a conflict, not a crash.
        assert curator.post(f"/admin/jobs/{job['job']}/cancel", data={"csrf": csrf[1]}).status_code == 409


def test_j10_temporal_out_of_reach_is_a_note_on_the_jobs_table(cluster: Cluster):
    # The real jobs client, pointed at a port nothing listens on.
    settings = cluster.settings()
    nowhere = {**settings.jobs.model_dump(), "temporal_address": f"127.0.0.1:{free_port()}"}
    gone = settings.model_copy(update={"jobs": JobsSettings(**nowhere)})
    table = anyio.run(jobs_table, Jobs(gone))
    assert table.rows == [] and table.note is not None
    assert "cannot be reached" in table.note and "jobs.temporal_address" in table.note
