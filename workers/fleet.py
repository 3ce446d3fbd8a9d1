"""What a worker process loads: settings, logging, the broker with every channel's actor, the
scheduler and the in-app retention job. ``kai-messaging worker email`` runs the Dramatiq CLI
on this module with ``--queues email`` so the process consumes only its channel's queue (and
its delay queue)."""

from __future__ import annotations

import asyncio
import os

import uvloop

from shared.broker import get_broker
from shared.config import get_settings, log_webhook_network_policy
from shared.logging import configure_logging, secret_values
from workers.actors import declare_all
from workers.retention import RetentionMiddleware
from workers.scheduler import SchedulerMiddleware

# Dramatiq's AsyncIO middleware makes the process's event loop with the current policy; on
# uvloop's, a message's callbacks cost about half the CPU of asyncio's own loop.
asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
settings = get_settings()
configure_logging(settings.log_level, secret_values(settings))
log_webhook_network_policy(settings)
broker = get_broker(settings)
broker.add_middleware(SchedulerMiddleware(settings))
broker.add_middleware(RetentionMiddleware(settings))
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Per-actor in-progress, retry and dead-letter counts, and the exposition server that
    # merges every process's metrics (ours included) on the pool's metrics port.
    from dramatiq.middleware.prometheus import Prometheus

    broker.add_middleware(Prometheus())
pipelines = declare_all(broker, settings)
