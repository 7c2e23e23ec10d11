"""One error type for everything expected: a code decides the HTTP status, the CLI exit code and retryability."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    # input
    invalid_input = "invalid_input"
    payload_too_large = "payload_too_large"
    headers_too_large = "headers_too_large"
    unknown_creator = "unknown_creator"
    not_found = "not_found"
    unauthorized = "unauthorized"
    forbidden = "forbidden"
    conflict = "conflict"
    resume_unavailable = "resume_unavailable"
    # limits
    rate_limited = "rate_limited"
    creator_rate_limited = "creator_rate_limited"
    too_many_streams = "too_many_streams"
    site_budget_exhausted = "site_budget_exhausted"
    # dependencies
    index_unavailable = "index_unavailable"
    index_locked = "index_locked"
    index_mismatch = "index_mismatch"
    database_unavailable = "database_unavailable"
    limiter_unavailable = "limiter_unavailable"
    stream_log_unavailable = "stream_log_unavailable"
    # generation
    all_tiers_failed = "all_tiers_failed"
    upstream_interrupted = "upstream_interrupted"
    upstream_stalled = "upstream_stalled"
    shutting_down = "shutting_down"
    internal = "internal"


# Seconds a retryable 503 asks the caller to wait when its raiser names no time of its own.
DEFAULT_RETRY_AFTER = 5

# status, retryable, CLI exit code
_TRAITS: dict[ErrorCode, tuple[int, bool, int]] = {
    ErrorCode.invalid_input: (422, False, 2),
    ErrorCode.payload_too_large: (413, False, 2),
    ErrorCode.headers_too_large: (431, False, 2),
    ErrorCode.unknown_creator: (404, False, 2),
    ErrorCode.not_found: (404, False, 2),
    ErrorCode.unauthorized: (401, False, 2),
    ErrorCode.forbidden: (403, False, 2),
    ErrorCode.conflict: (409, True, 1),
    ErrorCode.resume_unavailable: (409, False, 1),
    ErrorCode.rate_limited: (429, True, 1),
    ErrorCode.creator_rate_limited: (429, True, 1),
    ErrorCode.too_many_streams: (429, True, 1),
    ErrorCode.site_budget_exhausted: (429, True, 1),
    ErrorCode.index_unavailable: (503, True, 3),
    ErrorCode.index_locked: (503, True, 3),
    ErrorCode.index_mismatch: (503, False, 3),
    ErrorCode.database_unavailable: (503, True, 3),
    ErrorCode.limiter_unavailable: (503, True, 3),
    ErrorCode.stream_log_unavailable: (503, True, 3),
    ErrorCode.all_tiers_failed: (503, True, 3),
    ErrorCode.upstream_interrupted: (502, True, 3),
    ErrorCode.upstream_stalled: (504, True, 3),
    ErrorCode.shutting_down: (503, True, 3),
    ErrorCode.internal: (500, True, 1),
}


class LorechatError(Exception):
    """An expected failure, safe to show: the message never carries secrets, SQL or stack traces."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        retry_after: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.extra = extra or {}

    @property
    def status(self) -> int:
        return _TRAITS[self.code][0]

    @property
    def retryable(self) -> bool:
        return _TRAITS[self.code][1]

    @property
    def exit_code(self) -> int:
        return _TRAITS[self.code][2]

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code.value, "message": self.message, "retryable": self.retryable}
        if request_id:
            body["request_id"] = request_id
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
        body.update(self.extra)
        return body
