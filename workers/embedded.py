"""Workers inside another process: the embedded default (``make run``) runs the gateway and
every channel's actors in one process, because the in-process broker cannot be shared."""

from __future__ import annotations

import dramatiq

from shared.broker import get_broker
from shared.config import Settings
from workers.actors import declare_all
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

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        # The pipelines close with the worker (workers.actors.ClosePipelines).
        self.worker.stop()
