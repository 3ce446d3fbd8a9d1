"""Waiting on conditions with a deadline (never a bare sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable

#: How often a condition is re-checked while waiting.
POLL_SECONDS = 0.02


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float = 10,
    message: str | Callable[[], str] = "condition not met",
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout}s: {text}")
        time.sleep(POLL_SECONDS)


async def await_until(
    condition: Callable[[], bool],
    *,
    timeout: float = 10,
    message: str | Callable[[], str] = "condition not met",
) -> None:
    """:func:`wait_until` for async tests: the event loop keeps running while it waits (a
    blocking sleep would stop the very closes and sends being waited for)."""
    import anyio

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout}s: {text}")
        await anyio.sleep(POLL_SECONDS)
