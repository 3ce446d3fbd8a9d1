"""How the webhook pool scales: with worker processes against a fast receiver (CPU-bound, so
on two cores it flattens after two), and with threads against a slow receiver (100 ms per
request, so waiting, not CPU, is the limit and one process should scale with its threads)."""

from __future__ import annotations

from dataclasses import dataclass

from bench.endtoend import PRODUCE_LIMIT_S, drain_rate
from bench.env import BenchEnv
from bench.fleet import produce, send_fields, worker_pool
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


def _run(env: BenchEnv, receiver_url: str, *, processes: int, threads: int, count: int) -> ScalingPoint:
    env.reset()
    channel = Channel.WEBHOOK
    produced = produce(
        env, channel, send_fields(channel, receiver_url), count=count, time_limit_s=PRODUCE_LIMIT_S
    )
    with worker_pool(env, channel, processes=processes, threads=threads, extra_env={}):
        rate, delivered = drain_rate(env, channel, produced.count)
    return ScalingPoint(processes, threads, rate, delivered)


def process_scaling(env: BenchEnv, receiver_url: str, *, counts: dict[int, int]) -> list[ScalingPoint]:
    """Throughput with each number of processes in ``counts`` (processes → messages)."""
    return [
        _run(env, receiver_url, processes=p, threads=THREADS_PER_PROCESS, count=n) for p, n in counts.items()
    ]


def slow_receiver(env: BenchEnv, *, count: int) -> ScalingPoint:
    """One worker process with many threads against a receiver that takes 100 ms per request."""
    with http_peer(delay_ms=SLOW_RECEIVER_MS) as url:
        point = _run(env, url, processes=1, threads=SLOW_THREADS, count=count)
        in_flight = int(peer_stats(url)["max_in_flight"])  # type: ignore[call-overload]
    return ScalingPoint(point.processes, point.threads, point.rate, point.delivered, in_flight)
