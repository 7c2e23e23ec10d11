"""The circuit breaker's state machine, on a controlled clock."""

from __future__ import annotations

from backend.chat.circuit import CircuitBreaker, CircuitState
from backend.metrics import REGISTRY
from backend.settings import CircuitSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gauge(tier: str) -> float | None:
    return REGISTRY.get_sample_value("lorechat_circuit_open", {"tier": tier})


def test_opens_after_threshold_then_half_opens_for_one_trial() -> None:
    clock = Clock()
    breaker = CircuitBreaker("circuit-a", CircuitSettings(failure_threshold=2, cooldown_seconds=30), clock=clock)

    breaker.record_failure()
    assert breaker.state is CircuitState.closed and breaker.allow()
    breaker.record_failure()
    assert breaker.state is CircuitState.open and not breaker.allow()
    assert gauge("circuit-a") == 1
    assert breaker.retry_in() == 30

    clock.now += 30
    assert breaker.allow()  # the single trial
    assert not breaker.allow()  # others wait while it runs
    breaker.record_success()
    assert breaker.state is CircuitState.closed and breaker.allow()
    assert gauge("circuit-a") == 0


def test_failed_trial_reopens_at_once() -> None:
    clock = Clock()
    breaker = CircuitBreaker("circuit-b", CircuitSettings(failure_threshold=3, cooldown_seconds=10), clock=clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now += 10
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is CircuitState.open
    assert breaker.retry_in() == 10


def test_throttling_opens_immediately_for_the_longer_of_cooldown_and_retry_after() -> None:
    clock = Clock()
    settings = CircuitSettings(failure_threshold=5, cooldown_seconds=5)
    breaker = CircuitBreaker("circuit-c", settings, clock=clock)

    breaker.record_failure(retry_after=60, throttled=True)
    assert breaker.state is CircuitState.open
    clock.now += 59
    assert not breaker.allow()
    clock.now += 1
    assert breaker.allow()

    short = CircuitBreaker("circuit-d", settings, clock=clock)
    short.record_failure(throttled=True)  # a 429 without Retry-After: the configured cool-down
    assert short.retry_in() == 5


def test_abandoned_trial_frees_the_slot() -> None:
    clock = Clock()
    breaker = CircuitBreaker("circuit-e", CircuitSettings(failure_threshold=1, cooldown_seconds=1), clock=clock)
    breaker.record_failure()
    clock.now += 1
    assert breaker.allow()
    breaker.release()
    assert breaker.allow()
