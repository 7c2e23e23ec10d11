"""This process's leases on the answers it streams: renewed while it lives, so a dead process's turns lapse.

A turn's placeholder answer is stored "streaming" with an owner (one random id per process) and an expiry.
While the process lives, `Leases.run` renews the expiry of every answer it still streams, every third of
the lease, and reaps other processes' answers whose lease lapsed. A process killed mid-stream (SIGKILL, a
power cut: nothing runs to finish its turns) stops renewing, so within one lease its answers are marked
interrupted and their conversations accept turns again, by any process sharing the database and without a
restart (INV-1, F13). `start_turn` also reaps a lapsed answer at once when a new turn needs its
conversation. Expiries are compared with each process's own clock: keep clocks within a fraction of a lease.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

import anyio
from sqlalchemy import update

from backend.errors import LorechatError
from backend.storage.models import Message, new_id, utcnow
from backend.storage.records import MessageStatus
from backend.storage.repository import Sessions, db_errors, reap_streaming

log = logging.getLogger(__name__)

# Ids per UPDATE when renewing: a thousand open streams (L1) must not make one giant statement.
_RENEW_BATCH = 500


class Leases:
    def __init__(self, sessions: Sessions, *, seconds: float, reaper_seconds: float) -> None:
        self.owner = new_id()
        self.seconds = seconds
        self._sessions = sessions
        self._reaper_seconds = reaper_seconds
        self._held: dict[str, float] = {}  # answer id → when its turn started (monotonic)

    def until(self) -> datetime:
        """The expiry to store with an answer taken now."""
        return utcnow() + timedelta(seconds=self.seconds)

    def hold(self, message_id: str) -> None:
        self._held[message_id] = time.monotonic()

    def release(self, message_id: str) -> None:
        self._held.pop(message_id, None)

    @property
    def held(self) -> int:
        return len(self._held)

    async def renew(self) -> int:
        """Push the expiry of every answer this process still streams; returns how many rows were renewed."""
        # A turn older than the reaper bound is not vouched for any more (a final write that never got
        # through): the reaper may have it, rather than a conversation locked for as long as this process lives.
        stale = time.monotonic() - self._reaper_seconds
        for message_id in [m for m, started in self._held.items() if started < stale]:
            self.release(message_id)
        held, until, renewed = list(self._held), self.until(), 0
        for start in range(0, len(held), _RENEW_BATCH):
            async with db_errors(), self._sessions() as session, session.begin():
                result = await session.execute(
                    update(Message)
                    .where(
                        Message.id.in_(held[start : start + _RENEW_BATCH]),
                        Message.status == MessageStatus.streaming,
                        Message.lease_owner == self.owner,
                    )
                    .values(lease_expires_at=until)
                    .execution_options(synchronize_session=False)
                )
            renewed += int(result.rowcount)  # type: ignore[attr-defined]
        return renewed

    async def run(self) -> None:
        """Renew, then reap lapsed answers, every third of a lease, until cancelled (the lifespan's end)."""
        while True:
            await anyio.sleep(self.seconds / 3)
            try:
                await self.renew()
                reaped = await reap_streaming(
                    self._sessions, older_than_seconds=self._reaper_seconds, alive=list(self._held)
                )
            except LorechatError as exc:  # the database is away: try again next round; leases may lapse
                log.warning("could not renew streaming leases: %s", exc.message)
                continue
            if reaped:
                log.warning("marked %d answers whose process stopped streaming them as interrupted", reaped)
