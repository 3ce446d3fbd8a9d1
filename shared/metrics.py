"""Prometheus metrics of the message flow.

Counters and histograms are recorded where the state changes (``shared.tracking``) and
around provider calls (``workers.delivery.pipeline``), so every channel and every outcome is counted
in one place. Worker pools run several processes: ``kai-messaging worker`` sets
``PROMETHEUS_MULTIPROC_DIR`` before the processes start and serves the merged view on its
metrics port (Dramatiq's Prometheus middleware adds per-actor in-progress, retry and
dead-letter counts there). The gateway serves ``/metrics`` with queue depths read from
RabbitMQ at scrape time.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

#: Latency buckets in seconds, from a local loopback delivery to a slow remote relay.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)

ENQUEUED = Counter("kai_messages_enqueued_total", "Messages accepted for delivery.", ["channel"])
COMPLETED = Counter(
    "kai_messages_completed_total",
    "Messages that reached a final state, by status and reason (error code; 'ok' on success).",
    ["channel", "status", "reason"],
)
ATTEMPTS = Counter("kai_delivery_attempts_total", "Delivery attempts started (claims).", ["channel"])
RETRIES = Counter(
    "kai_delivery_retries_total",
    "Attempts that failed temporarily and were rescheduled.",
    ["channel", "reason"],
)
DELIVERY_LATENCY = Histogram(
    "kai_enqueue_to_final_seconds",
    "Time from acceptance to the final state of a message.",
    ["channel", "status"],
    buckets=LATENCY_BUCKETS,
)
PROVIDER_LATENCY = Histogram(
    "kai_provider_seconds",
    "Time spent in one provider call (SMTP, Twilio, HTTP, inbox insert).",
    ["channel", "outcome"],
    buckets=LATENCY_BUCKETS,
)
PROVIDER_CALLS = Counter(
    "kai_provider_calls_total",
    "Calls of each named provider of a channel with several (failover), by outcome: success, "
    "temporary, permanent, or circuit_open (skipped while its breaker is open).",
    ["channel", "provider", "outcome"],
)
PROVIDER_FAILOVERS = Counter(
    "kai_provider_failovers_total",
    "Attempts that moved on from a provider to the next one after it failed or was open.",
    ["channel", "provider"],
)
GATEWAY_RATE_LIMITED = Counter(
    "kai_gateway_rate_limited_total", "Requests the gateway refused with 429 (rate limit).", ["group"]
)
RECIPIENT_RATE_LIMITED = Counter(
    "kai_recipient_rate_limited_total",
    "Messages skipped because their recipient had reached its hourly limit.",
    ["channel"],
)
RATE_LIMIT_UNAVAILABLE = Counter(
    "kai_rate_limit_unavailable_total",
    "Rate-limit checks let through unchecked because the limiter's backend (Redis) did not answer.",
    ["component"],
)

#: How long queue depths read from RabbitMQ are reused between scrapes.
QUEUE_DEPTH_CACHE_SECONDS = 5.0


class QueueDepthCollector(Collector):
    """Queue, delay-queue and dead-letter depths and consumer counts, read at scrape time."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Any]] | None = None

    def _read(self) -> list[Any]:
        from shared.queue_status import broker_status

        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > QUEUE_DEPTH_CACHE_SECONDS:
                from shared.channels import Channel

                statuses = broker_status(self.settings, [c.queue_name for c in Channel])
                self._cached = (now, list(statuses.values()))
            return self._cached[1]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("kai_queue_depth", "Messages ready in a queue.", labels=["queue", "kind"])
        consumers = GaugeMetricFamily(
            "kai_queue_consumers", "Consumers attached to a queue.", labels=["queue"]
        )
        try:
            statuses = self._read()
        except Exception:
            statuses = []  # the broker is down: /readyz says so; the metric just goes missing
        for s in statuses:
            for kind, value in (("ready", s.depth), ("delayed", s.delayed), ("dead_letter", s.dead_lettered)):
                if value is not None:
                    depth.add_metric([s.queue, kind], value)
            if s.consumers is not None:
                consumers.add_metric([s.queue], s.consumers)
        yield depth
        yield consumers


def exposition(extra: Collector | None = None) -> bytes:
    """The metrics of this process, or of all processes of a multiprocess pool."""
    from prometheus_client import REGISTRY

    registry: CollectorRegistry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    if extra is None:
        return generate_latest(registry)
    combined = CollectorRegistry()
    combined.register(_Forward(registry))
    combined.register(extra)
    return generate_latest(combined)


class _Forward(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        yield from self.registry.collect()
