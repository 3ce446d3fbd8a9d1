"""Workers inside another process: the embedded default (``make run``) runs the gateway and
every channel's actors in one process, the runner, because the in-process broker cannot be
shared. What other processes send reaches it through the hand-off relay
(:mod:`workers.handoff`), which runs here too."""

from __future__ import annotations

import dramatiq

from shared.broker import get_broker
from shared.config import Settings
from workers.actors import declare_all
from workers.handoff import HandOffRelay
from workers.retention import RetentionMiddleware
from workers.scheduler import SchedulerMiddleware

#: Worker threads for all channels together in the embedded process.
EMBEDDED_THREADS = 8


class EmbeddedWorkers:
    def __init__(self, settings: Settings, *, threads: int = EMBEDDED_THREADS) -> None:
        self.settings = settings
        self.broker = get_broker(settings)
        if not any(isinstance(m, SchedulerMiddleware) for m in self.broker.middleware):
            self.broker.add_middleware(SchedulerMiddleware(settings))
        if not any(isinstance(m, RetentionMiddleware) for m in self.broker.middleware):
            self.broker.add_middleware(RetentionMiddleware(settings))
        self.pipelines = declare_all(self.broker, settings)
        self.worker = dramatiq.Worker(self.broker, worker_threads=threads, worker_timeout=100)
        # With RabbitMQ every producer publishes itself, and a marker is a publish in flight:
        # only the scheduler's relay, which waits for stale ones, may take it.
        self.handoff = HandOffRelay(settings, self.broker) if settings.embedded_broker else None

    def start(self) -> None:
        self.worker.start()
        if self.handoff is not None:
            self.handoff.start()

    def stop(self) -> None:
        if self.handoff is not None:
            # Sends made from now on wait in their markers for the next runner.
            self.handoff.stop()
        # The pipelines close with the worker (workers.actors.ClosePipelines).
        self.worker.stop()
