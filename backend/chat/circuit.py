"""Per-tier circuit breaker: stop calling a tier that keeps failing before its first token, for a while."""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from backend.metrics import CIRCUIT_OPEN
from backend.settings import CircuitSettings


class CircuitState(StrEnum):
    closed = "closed"
    open = "open"
    half_open = "half_open"


class CircuitBreaker:
    """closed → (threshold consecutive failures, or one throttling answer) → open → (cool-down) →
    half-open: one trial call; its success closes the circuit, its failure opens it again.

    Only failures before a first token count: a tier that answered is healthy even if a stream broke.
    Not thread-safe by design: it lives on the event loop.
    """

    def __init__(self, tier: str, settings: CircuitSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.tier = tier
        self._settings = settings
        self._clock = clock
        self._state = CircuitState.closed
        self._failures = 0
        self._open_until = 0.0
        self._trial_in_flight = False
        CIRCUIT_OPEN.labels(tier=tier).set(0)

    @property
    def state(self) -> CircuitState:
        if self._state is CircuitState.open and self._clock() >= self._open_until:
            self._state = CircuitState.half_open
            self._trial_in_flight = False
        return self._state

    @property
    def failures(self) -> int:
        return self._failures

    def retry_in(self) -> float | None:
        """Seconds until the circuit lets a trial through; None when it is not open."""
        if self.state is not CircuitState.open:
            return None
        return max(self._open_until - self._clock(), 0.0)

    def allow(self) -> bool:
        """May a call go to this tier now? In half-open state only one trial at a time gets True."""
        state = self.state
        if state is CircuitState.closed:
            return True
        if state is CircuitState.half_open and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        self._state = CircuitState.closed
        self._failures = 0
        self._trial_in_flight = False
        CIRCUIT_OPEN.labels(tier=self.tier).set(0)

    def record_failure(self, *, retry_after: float | None = None, throttled: bool = False) -> None:
        """A failure before the first token. `throttled` (429, or a Retry-After) opens at once."""
        self._failures += 1
        was_trial = self._state is CircuitState.half_open
        if was_trial or throttled or retry_after is not None or self._failures >= self._settings.failure_threshold:
            self._open(max(self._settings.cooldown_seconds, retry_after or 0.0))

    def release(self) -> None:
        """The call was abandoned (the visitor left) before it proved anything: free the trial slot."""
        self._trial_in_flight = False

    def _open(self, seconds: float) -> None:
        self._state = CircuitState.open
        self._open_until = self._clock() + seconds
        self._trial_in_flight = False
        CIRCUIT_OPEN.labels(tier=self.tier).set(1)
