"""One JSON error shape for every failure before a stream starts: code, message, retryable, request id."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from backend.errors import DEFAULT_RETRY_AFTER, ErrorCode, LorechatError
from backend.storage.repository import DATABASE_ERRORS, unavailable_error

log = logging.getLogger("lorechat.api")

_RATE_LIMIT_CODES = {
    ErrorCode.rate_limited,
    ErrorCode.creator_rate_limited,
    ErrorCode.too_many_streams,
    ErrorCode.site_budget_exhausted,
}
_HTTP_CODES = {
    401: ErrorCode.unauthorized,
    404: ErrorCode.not_found,
    409: ErrorCode.conflict,
    413: ErrorCode.payload_too_large,
}


def request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def error_response(error: LorechatError, request: Request) -> JSONResponse:
    if error.retry_after is None and error.status == 503 and error.retryable:
        # Every "not now" tells the caller when to come back, even where the raiser could not know better.
        error.retry_after = DEFAULT_RETRY_AFTER
    body = error.body(request_id(request))
    headers: dict[str, str] = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    if error.code in _RATE_LIMIT_CODES:
        body["error"] = error.message  # the documented 429 shape: {"error": ..., "retry_after": N}
    if error.code is ErrorCode.unauthorized:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=error.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LorechatError)
    async def _lorechat(request: Request, exc: LorechatError) -> JSONResponse:
        return error_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [_clean_detail(error) for error in exc.errors()]
        fields = ", ".join(dict.fromkeys(d["field"] for d in details if d["field"])) or "body"
        first = details[0]["msg"] if details else "invalid request"
        error = LorechatError(ErrorCode.invalid_input, f"Invalid {fields}: {first}", extra={"detail": details})
        return error_response(error, request)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, ErrorCode.invalid_input)
        body = {"code": code.value, "message": str(exc.detail), "retryable": False, "request_id": request_id(request)}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    async def _database(request: Request, exc: Exception) -> JSONResponse:
        # A database failure a route did not map itself: still 503 with Retry-After when it means "not now"
        # (F4, backend/storage/repository.py::unavailable_error), else the internal error below.
        unavailable = unavailable_error(exc)
        if unavailable is not None:
            return error_response(unavailable, request)
        return await _unexpected(request, exc)

    for kind in DATABASE_ERRORS:
        app.add_exception_handler(kind, _database)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        unavailable = unavailable_error(exc)
        if unavailable is not None:
            return error_response(unavailable, request)
        # Never a stack trace, SQL or hostname in a response (INV-6): those go to the log only.
        log.exception("unhandled error on %s %s (request %s)", request.method, request.url.path, request_id(request))
        error = LorechatError(ErrorCode.internal, "Internal error")
        return error_response(error, request)


def _clean_detail(error: dict[str, Any]) -> dict[str, Any]:
    # The offending input is left out: echoing it back can be huge, or carry what we just refused.
    location = [str(part) for part in error.get("loc", ()) if part != "body"]
    return {"field": ".".join(location), "msg": error.get("msg", ""), "type": error.get("type", "")}
