"""One view of Redis's health for every user of it in this process (rate limits, history cache, stream slots,
the resumable-stream log).

After any Redis call fails or times out, every user skips Redis for a cool-down and falls back (in-process
limits and slots, SQL for history), so a dead or silent Redis costs one timeout per cool-down in total, not
one per user or per request (F1/F2).
"""

from __future__ import annotations

import time


class RedisHealth:
    def __init__(self, cooldown_seconds: float = 5.0) -> None:
        self._cooldown = cooldown_seconds
        self._skip_until = 0.0  # monotonic

    def available(self) -> bool:
        """False during the cool-down after a failure: do not call Redis now."""
        return time.monotonic() >= self._skip_until

    def failed(self) -> None:
        self._skip_until = time.monotonic() + self._cooldown

    def retry_in(self) -> float:
        """Seconds until Redis is tried again (0 when it is tried now)."""
        return max(0.0, self._skip_until - time.monotonic())

    @property
    def cooldown_seconds(self) -> float:
        return self._cooldown
