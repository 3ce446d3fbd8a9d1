"""The gateway's error catalogue: every error leaves as
``{"error": {"code": ..., "message": ..., "details": [...]}}`` with a stable code."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from shared.errors import EnqueueError, NotFound, ValidationError
from shared.logging import get_logger

log = get_logger(__name__)


class ApiError(Exception):
    """An error the API answers with directly."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or []}}
    return JSONResponse(body, status_code=status, headers=headers)


async def api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationError)
    return error_response(exc.status_code, exc.code, exc.message, exc.details)


async def not_found(_request: Request, exc: Exception) -> JSONResponse:
    return error_response(404, "not_found", str(exc))


async def enqueue_error(_request: Request, exc: Exception) -> JSONResponse:
    log.error("gateway.enqueue_failed", error=str(exc))
    return error_response(
        503, "broker_unavailable", "the message was not accepted; retry later", headers={"Retry-After": "1"}
    )


#: Seconds a client is asked to wait when the database does not answer: about what a
#: PostgreSQL restart or failover takes.
DATABASE_RETRY_AFTER_SECONDS = 5

#: What the database driver raises when the server cannot be reached or used right now (not
#: started, restarting, out of connection slots, the connection dropped) and when this
#: process's pool has no connection to hand out in time: the client should retry, not report
#: a bug.
DATABASE_OUTAGES = (OperationalError, InterfaceError, PoolTimeout)


async def database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    """503 with Retry-After. Registered by class (never as the catch-all) so Starlette answers
    it like any handled error and the keep-alive connection stays usable: the catch-all's
    exception is raised again to the server, which then closes the connection."""
    first_line = (str(getattr(exc, "orig", exc)).splitlines() or [type(exc).__name__])[0]
    log.error("gateway.database_unavailable", error=first_line)
    return error_response(
        503,
        "database_unavailable",
        "the database is unavailable; retry later",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


async def http_exception(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    return error_response(
        exc.status_code, codes.get(exc.status_code, f"http_{exc.status_code}"), str(exc.detail)
    )


async def unstorable_value(_request: Request, exc: Exception) -> JSONResponse:
    """The database refused a value the request carried (too long for its column, a NUL
    character in a path or query parameter): the caller's mistake, not a server error."""
    log.warning("gateway.unstorable_value", error=str(getattr(exc, "orig", exc)).splitlines()[0])
    return error_response(422, "invalid_value", "a value in the request cannot be stored or looked up")


async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("gateway.unexpected_error", error_type=type(exc).__name__)
    return error_response(500, "internal_error", "internal error")


HANDLERS = {
    ApiError: api_error,
    ValidationError: validation_error,
    NotFound: not_found,
    EnqueueError: enqueue_error,
    HTTPException: http_exception,
    DataError: unstorable_value,
    **dict.fromkeys(DATABASE_OUTAGES, database_unavailable),
    Exception: unexpected,
}
