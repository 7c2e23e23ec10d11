"""A channel's sync as a job on real workers, and its Temporal schedule following the channel (rows J4, J8)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.service import RPCError

from pipeline.jobs.client import Jobs
from pipeline.jobs.schedules import schedule_id
from tests.fakes.web_server import WebServer
from tests.pipeline.channels.corpus import blog_feed
from tests.pipeline.jobs.conftest import Cluster

pytestmark = [pytest.mark.services, pytest.mark.timeout(240)]

CHANNELS = {"LORECHAT_CHANNELS__ALLOW_PRIVATE_NETWORKS": "true", "LORECHAT_CHANNELS__PER_HOST_DELAY_SECONDS": "0"}


@pytest.fixture
def web() -> Iterator[WebServer]:
    with WebServer().running() as server:
        yield server


def schedule(cluster: Cluster, channel_id: int) -> dict[str, Any] | None:
    async def read() -> dict[str, Any] | None:
        client = await Client.connect(cluster.temporal_address)
        try:
            described = await client.get_schedule_handle(schedule_id(cluster.settings(), channel_id)).describe()
        except RPCError:
            return None
        return {
            "paused": described.schedule.state.paused,
            "every": [spec.every for spec in described.schedule.spec.intervals],
        }

    return asyncio.run(read())


def test_a_channel_syncs_as_a_job_a_second_start_joins_and_its_schedule_follows_it(cluster: Cluster, web: WebServer):
    feed = blog_feed(web)
    added = cluster.lorechat("channels", "add", "ada", feed, "--kind", "feed", "--every", "2h", "--json", **CHANNELS)
    assert added.returncode == 0, added.stderr
    channel = json.loads(added.stdout)["id"]
    assert schedule(cluster, channel) == {"paused": False, "every": [timedelta(hours=2)]}

    paused = cluster.lorechat("channels", "pause", str(channel), **CHANNELS)
    assert paused.returncode == 0 and schedule(cluster, channel)["paused"] is True  # type: ignore[index]
    resumed = cluster.lorechat("channels", "resume", str(channel), **CHANNELS)
    assert resumed.returncode == 0 and schedule(cluster, channel)["paused"] is False  # type: ignore[index]

    cluster.start_workers(1, LORECHAT_TEST_SLOW_SECONDS="1.0", **CHANNELS)
    jobs = Jobs(cluster.settings())
    first = jobs.start_channel(channel, origin="cli")
    second = jobs.start_channel(channel, origin="cli")
    assert (first.joined, second.joined, second.run) == (False, True, first.run)
    result = jobs.wait(first.id, first.run)
    assert result["report"]["status"] == "ok" and result["report"]["added"] == 3

    # `channels sync` through the job: the hash gate finds nothing new.
    synced = cluster.lorechat("channels", "sync", str(channel), "--json", **CHANNELS)
    assert synced.returncode == 0, synced.stderr
    [report] = json.loads(synced.stdout)
    assert (report["status"], report["added"], report["unchanged"]) == ("ok", 0, 3)
    assert {job.id for job in jobs.list()} == {f"channel:{channel}"}

    removed = cluster.lorechat("channels", "remove", str(channel), "--yes", **CHANNELS)
    assert removed.returncode == 0, removed.stderr
    assert schedule(cluster, channel) is None
