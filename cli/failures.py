"""How a command that failed says so: one line on stderr naming what went wrong and, where
there is one, what to do; the traceback only with LOG_LEVEL=DEBUG."""

from __future__ import annotations

from shared.logging import redact_text


def _first_line(exc: BaseException) -> str:
    """The exception's first line, with credentials (a URL's password, a token) redacted as
    in the logs: they never reach the terminal."""
    text = str(exc).strip() or f"({type(exc).__name__})"
    return redact_text(text.splitlines()[0])


def describe(exc: BaseException) -> str:
    """One line for an exception no command expected (a service down, a database without
    tables)."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    if isinstance(exc, OperationalError | ProgrammingError):
        detail = _first_line(exc.orig) if exc.orig is not None else _first_line(exc)
        if "no such table" in detail or "does not exist" in detail:
            return f"the database has no tables yet ({detail}): run `kai-messaging migrate` first"
        return f"the database cannot be used: {detail}"
    module = type(exc).__module__.split(".")[0]
    if module in {"pika", "aiormq", "pamqp"}:
        return f"RabbitMQ (BROKER_URL) cannot be reached: {_first_line(exc)}"
    if module == "redis":
        return f"Redis (REDIS_URL) cannot be reached: {_first_line(exc)}"
    if isinstance(exc, ConnectionError | TimeoutError):
        return f"a service cannot be reached: {_first_line(exc)}"
    return f"{type(exc).__name__}: {_first_line(exc)}"
