"""How the webhook pool scales: with worker processes against a fast receiver (CPU-bound, so
on two cores it flattens after two), and with threads against a slow receiver (100 ms per
request, so waiting, not CPU, is the limit and one process should scale with its threads)."""

from __future__ import annotations

from dataclasses import dataclass

from bench.endtoend import PRODUCE_LIMIT_S, drain_rate
from bench.env import BenchEnv
from bench.fleet import produce, send_fields, webhook_pool
from bench.pools import Pool, Pools
from bench.procs import http_peer, peer_stats
from shared.channels import Channel

#: Threads per process in the process-scaling runs (the end-to-end rows' setting).
THREADS_PER_PROCESS = 16
#: The slow receiver's answer time, and the threads one process runs against it: enough
#: waits in flight for SLOW_TARGET webhooks/s.
SLOW_RECEIVER_MS = 100
SLOW_THREADS = 256


@dataclass(frozen=True)
class ScalingPoint:
    processes: int
    threads: int
    rate: float
    delivered: int
    max_in_flight: int = 0


def _drain(env: BenchEnv, pool: Pool, receiver_url: str, *, count: int) -> ScalingPoint:
    """Fill the webhook queue while ``pool`` is held, then time it draining the queue."""
    env.reset()
    channel = Channel.WEBHOOK
    produced = produce(
        env, channel, send_fields(channel, receiver_url), count=count, time_limit_s=PRODUCE_LIMIT_S
    )
    with pool.released():
        rate, delivered = drain_rate(env, channel, produced.count)
    return ScalingPoint(pool.spec.processes, pool.spec.threads, rate, delivered)


def processes_point(
    env: BenchEnv, pools: Pools, receiver_url: str, *, processes: int, count: int
) -> ScalingPoint:
    """Throughput of a webhook pool of ``processes`` processes against the fast receiver."""
    [pool] = pools.start(webhook_pool(processes, THREADS_PER_PROCESS))
    return _drain(env, pool, receiver_url, count=count)


def slow_receiver(env: BenchEnv, pools: Pools, *, count: int) -> ScalingPoint:
    """One worker process with many threads against a receiver that takes 100 ms per request."""
    [pool] = pools.start(webhook_pool(1, SLOW_THREADS))
    with http_peer(delay_ms=SLOW_RECEIVER_MS) as url:
        point = _drain(env, pool, url, count=count)
        in_flight = int(peer_stats(url)["max_in_flight"])  # type: ignore[call-overload]
    return ScalingPoint(point.processes, point.threads, point.rate, point.delivered, in_flight)
