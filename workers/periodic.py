"""A duty that runs on its own daemon thread inside a worker process, every interval, until
stopped: the scheduler and the inbox retention job are both one of these."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from shared.config import Settings
from shared.events.queue import EVENTS_QUEUE
from shared.logging import get_logger

log = get_logger(__name__)


class PeriodicThread:
    """Calls ``step`` every ``interval`` seconds. ``step`` returns True when it left work
    behind (a backlog), and is then called again at once instead of after the interval; so is
    it after :meth:`wake`. ``next_due``, when given, says in how many seconds the duty has
    something due (None: nothing), and the wait ends then if that is sooner than the interval.
    An exception is logged and the next step runs as planned: one failed tick must not end
    the duty for the life of the process."""

    def __init__(
        self,
        name: str,
        interval: float,
        step: Callable[[], bool],
        next_due: Callable[[], float | None] | None = None,
    ) -> None:
        self.name = name
        self.interval = interval
        self.step = step
        self.next_due = next_due
        self._stop = threading.Event()
        self._woken = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            # Cleared before the step: a wake during the step is work the step may have missed.
            self._woken.clear()
            try:
                more = self.step()
            except Exception:
                log.exception(f"{self.name}.step_failed")
                more = False
            if not more:
                self._woken.wait(self._wait())

    def _wait(self) -> float:
        due = self.next_due() if self.next_due is not None else None
        return self.interval if due is None else max(0.0, min(self.interval, due))

    def wake(self) -> None:
        """Run the next step now rather than at the end of the interval."""
        self._woken.set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"kai-{self.name}", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self._woken.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


class EventsDuty(Middleware):
    """A duty of every process consuming ``events`` (the lost-event rescue, the digest closer,
    the analytics folder): ``step`` every scheduler interval on its own thread, from the
    worker's boot to its shutdown; processes of other queues do nothing."""

    name = "events_duty"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._runner: PeriodicThread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        queues: set[str] | None = worker.consumer_whitelist
        if queues is not None and EVENTS_QUEUE not in queues:
            return
        self.boot(broker)
        interval = self.settings.scheduler_interval_ms / 1000
        self._runner = PeriodicThread(self.name, interval, lambda: self.step(broker))
        self._runner.start()

    def boot(self, broker: dramatiq.Broker) -> None:
        """What the duty needs before its first step (a publisher, say)."""

    def step(self, broker: dramatiq.Broker) -> bool:
        """One round; True when it left work behind."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """What to release after the last step."""

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self._runner is not None:
            self._runner.stop()
            self.shutdown()
