"""The producer's own event loop, for the synchronous Python API.

``notification_service.send_email(...)`` is called from ordinary threads (a web framework's
request threads, a script). Each call hands its enqueue to one asyncio loop on a daemon
thread and waits for the result, so the enqueues of every thread of the process share the
same batched inserts and the same broker connection (:mod:`producer.enqueue`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

from shared.errors import EnqueueError

T = TypeVar("T")

#: The longest a caller waits for its enqueue: the database and the broker each answer or
#: fail well within this; past it the call fails rather than hang a caller's thread.
CALL_TIMEOUT_S = 30.0


class BackgroundLoop:
    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="kai-producer-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT_S) -> T:
        """Run ``coroutine`` on the loop and wait for its result (or its exception)."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise EnqueueError(f"the enqueue did not finish within {timeout:.0f} s") from None


_lock = threading.Lock()
_loop: BackgroundLoop | None = None


def background() -> BackgroundLoop:
    """The process's producer loop, started at first use."""
    global _loop
    with _lock:
        if _loop is None:
            _loop = BackgroundLoop()
        return _loop
