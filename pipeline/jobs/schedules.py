"""Each channel's periodic sync as a Temporal schedule (`jobs.engine: temporal`): created, paused, resumed and
deleted with the channel (`lorechat channels add|pause|resume|remove`, the admin routes), and reconciled with the
channels table by every worker at start and by the serving process's scheduler pass, so a change made while
Temporal was unreachable still lands.

A schedule starts the channel's sync workflow (`channel:<id>` plus the time Temporal appends to scheduled runs)
every `interval` on the task queue, never two at once (overlap: skip); the channel's claim in SQL keeps a manual
sync and a scheduled one apart as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.client import ScheduleOverlapPolicy as Overlap
from temporalio.service import RPCError, RPCStatusCode

from backend.settings import Settings
from pipeline.jobs.model import CHANNEL_WORKFLOW, ChannelRequest, channel_job_id

if TYPE_CHECKING:
    from backend.curation.channels_store import ChannelView

log = logging.getLogger(__name__)


def schedule_id(settings: Settings, channel_id: int) -> str:
    """Scoped by task queue: deployments sharing a namespace keep their schedules apart."""
    return f"{settings.jobs.task_queue}:channel:{channel_id}"


def _schedule(settings: Settings, channel: ChannelView) -> Schedule:
    jobs = settings.jobs
    return Schedule(
        action=ScheduleActionStartWorkflow(
            CHANNEL_WORKFLOW,
            args=[ChannelRequest(channel_id=channel.id, origin="schedule"), jobs.heartbeat_seconds, jobs.max_attempts],
            id=channel_job_id(channel.id),
            task_queue=jobs.task_queue,
            memo={"kind": "channel", "origin": "schedule", "target": f"channel {channel.id}"},
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=channel.interval_seconds))]),
        policy=SchedulePolicy(overlap=Overlap.SKIP),
        state=ScheduleState(paused=channel.paused, note="paused with its channel" if channel.paused else None),
    )


async def ensure(client: Client, settings: Settings, channel: ChannelView) -> str:
    """Create the channel's schedule, or bring it to the channel's interval and paused state; returns what it did."""
    wanted = _schedule(settings, channel)
    handle = client.get_schedule_handle(schedule_id(settings, channel.id))
    try:
        await client.create_schedule(handle.id, wanted)
        return "created"
    except ScheduleAlreadyRunningError:
        pass

    def update(current: ScheduleUpdateInput) -> ScheduleUpdate | None:
        schedule = current.description.schedule
        same = (
            schedule.spec.intervals == wanted.spec.intervals
            and schedule.state.paused == wanted.state.paused
            and schedule.policy.overlap == wanted.policy.overlap
        )
        return None if same else ScheduleUpdate(schedule=wanted)

    await handle.update(update)
    return "updated"


async def remove(client: Client, settings: Settings, channel_id: int) -> bool:
    try:
        await client.get_schedule_handle(schedule_id(settings, channel_id)).delete()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def reconcile(client: Client, settings: Settings, channels: Iterable[ChannelView]) -> dict[str, int]:
    """Every channel has its schedule in its state; schedules of channels gone are deleted."""
    counts = {"created": 0, "updated": 0, "deleted": 0}
    known = set()
    for channel in channels:
        known.add(schedule_id(settings, channel.id))
        counts[await ensure(client, settings, channel)] += 1
    prefix = f"{settings.jobs.task_queue}:channel:"
    async for listed in await client.list_schedules():
        if listed.id.startswith(prefix) and listed.id not in known:
            await client.get_schedule_handle(listed.id).delete()
            counts["deleted"] += 1
    return counts


def sync_schedules(settings: Settings, *, changed: int | None = None, removed: int | None = None) -> Any:
    """From synchronous code (the CLI, a route's worker thread): one channel's schedule after a change to it, or
    (neither given) every channel's. Temporal unreachable is logged, not raised: the next reconcile catches up."""
    from backend.curation import channels_store
    from backend.errors import LorechatError
    from pipeline.curator_db import with_sessions
    from pipeline.jobs.client import connect, run_sync

    async def work() -> Any:
        channels = await asyncio.to_thread(with_sessions, settings, channels_store.list_channels)
        client = await connect(settings)
        if removed is not None:
            return await remove(client, settings, removed)
        if changed is not None:
            channel = next((c for c in channels if c.id == changed), None)
            return await ensure(client, settings, channel) if channel else await remove(client, settings, changed)
        return await reconcile(client, settings, channels)

    try:
        return run_sync(work())
    except LorechatError as exc:  # Temporal or the database unreachable
        log.warning("channel schedules not updated (the next reconcile will): %s", exc.message)
        return None
