"""Prometheus metrics, one registry per process (served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_STREAM_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

REQUESTS = Counter(
    "lorechat_http_requests_total", "HTTP requests by route and status", ["route", "status"], registry=REGISTRY
)
STREAMS_ACTIVE = Gauge("lorechat_streams_active", "Chat streams currently open", registry=REGISTRY)
STREAM_SECONDS = Histogram(
    "lorechat_stream_seconds", "Chat stream duration", ["outcome"], buckets=_STREAM_BUCKETS, registry=REGISTRY
)
TIME_TO_SOURCES = Histogram(
    "lorechat_time_to_sources_seconds",
    "Request start to the sources event",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "lorechat_time_to_first_token_seconds",
    "Request start to the first token event",
    ["tier"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
TIER_ANSWERS = Counter("lorechat_tier_answers_total", "Turns answered, by tier", ["tier"], registry=REGISTRY)
TOKEN_PATHS = Counter(
    "lorechat_token_path_total",
    "Answers by how their pieces after the first reached the visitor: native (decoded and written in C inside the "
    "upstream socket's callback, chat/native_relay.py), push (the same in Python, chat/relay.py) or pull (the turn's "
    "task reads each piece)",
    ["path"],
    registry=REGISTRY,
)
TIER_FALLBACKS = Counter(
    "lorechat_tier_fallbacks_total",
    "Tiers skipped or failed before their first token, by tier and reason (e.g. too_slow, busy, restarting)",
    ["tier", "reason"],
    registry=REGISTRY,
)
LOCAL_MODEL_READY = Gauge(
    "lorechat_local_model_ready", "1 while a local model process is ready", ["tier"], registry=REGISTRY
)
LOCAL_MODEL_RESTARTS = Counter(
    "lorechat_local_model_restarts_total",
    "Local model processes that ended and were restarted",
    ["tier"],
    registry=REGISTRY,
)
LOCAL_MODEL_PROMPT_SPEED = Gauge(
    "lorechat_local_model_prompt_tokens_per_second",
    "Prompt-reading speed of a local model, measured when it starts",
    ["tier"],
    registry=REGISTRY,
)
CIRCUIT_OPEN = Gauge("lorechat_circuit_open", "1 while a tier's circuit is open", ["tier"], registry=REGISTRY)
LIMITER_REJECTIONS = Counter(
    "lorechat_limiter_rejections_total", "Requests refused by a rate limit", ["scope"], registry=REGISTRY
)
DEPENDENCY_FALLBACKS = Counter(
    "lorechat_dependency_fallbacks_total",
    "Calls that fell back because a dependency failed (redis cache/limiter)",
    ["dependency"],
    registry=REGISTRY,
)
