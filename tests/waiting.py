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
