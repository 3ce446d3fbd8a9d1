"""Driving the real fleet: worker pools as ``kai-messaging worker`` processes, the producer
library filling their queues, and the figures read back from ``notification_logs``.

Throughput is measured by filling a channel's queue while its pool is down, then starting
the pool and timing the middle 80% of completions (by their recorded ``sent_at`` /
``delivered_at``), so neither process start-up nor the last stragglers count.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.env import BenchEnv
from bench.limits import webhook_payload
from bench.procs import child, kai
from producer.service import NotificationService
from shared.channels import Channel

#: Producer threads in the benchmark process, as an application server might run.
PRODUCER_THREADS = 16
#: How often worker memory is sampled while a pool runs.
RSS_SAMPLE_INTERVAL_S = 0.2
MIB = 1024 * 1024

TWILIO_ACCOUNT_SID = "AC" + "0" * 32
TWILIO_AUTH_TOKEN = "bench-twilio-token"
TWILIO_FROM = "+14155550199"


def send_fields(channel: Channel, receiver_url: str) -> dict[str, Any]:
    """A typical message of each channel."""
    if channel is Channel.WEBHOOK:
        return {"url": f"{receiver_url}/hook", "payload": webhook_payload()}
    if channel is Channel.EMAIL:
        return {
            "to": "user@example.com",
            "subject": "Welcome to KAI",
            "text": "Thank you for joining our platform!",
            "html": "<p>Thank you for joining our platform!</p>",
        }
    if channel is Channel.SMS:
        return {"to": "+14155550100", "message": "Your verification code is: 123456"}
    return {"user_id": "user-123", "title": "New Message", "message": "You have a new message from Admin"}


def channel_env(channel: Channel, *, receiver_url: str, smtp_port: int, threads: int) -> dict[str, str]:
    """Where each channel's provider delivers in the benchmark."""
    if channel is Channel.EMAIL:
        # One pooled SMTP connection per worker thread, so threads never queue for one.
        return {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(smtp_port), "EMAIL_POOL_SIZE": str(threads)}
    if channel is Channel.SMS:
        return {
            "TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
            "TWILIO_PHONE_NUMBER": TWILIO_FROM,
            "TWILIO_API_BASE": receiver_url,
        }
    return {}


@dataclass
class Pool:
    """A running ``kai-messaging worker`` pool and the memory its processes use."""

    pid: int
    peak_rss: int = 0
    samples: list[int] = field(default_factory=list)

    def worker_rss(self) -> list[int]:
        """RSS of each worker process (the pool's children; the parent only supervises)."""
        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        sizes = []
        for process in children:
            try:
                sizes.append(process.memory_info().rss)
            except psutil.NoSuchProcess:
                continue
        return sizes


@contextmanager
def worker_pool(
    env: BenchEnv, channel: Channel, *, processes: int, threads: int, extra_env: dict[str, str]
) -> Iterator[Pool]:
    argv = kai(["worker", channel.value, "--processes", str(processes), "--threads", str(threads)])
    stop = threading.Event()
    with child(argv, env.child_env(**extra_env)) as process:
        pool = Pool(process.pid)

        def sample() -> None:
            while not stop.wait(RSS_SAMPLE_INTERVAL_S):
                sizes = pool.worker_rss()
                if sizes:
                    pool.peak_rss = max(pool.peak_rss, *sizes)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            yield pool
        finally:
            stop.set()
            sampler.join()


@dataclass(frozen=True)
class Produced:
    count: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


def produce(
    env: BenchEnv,
    channel: Channel,
    fields: dict[str, Any],
    *,
    count: int,
    time_limit_s: float,
    rate: float | None = None,
) -> Produced:
    """Send up to ``count`` messages from PRODUCER_THREADS threads for at most ``time_limit_s``,
    as fast as possible or paced at ``rate`` per second."""
    service = NotificationService(env.settings())
    started = time.perf_counter()
    deadline = started + time_limit_s
    interval = PRODUCER_THREADS / rate if rate else 0.0
    sent = [0] * PRODUCER_THREADS

    def run(index: int) -> None:
        quota = count // PRODUCER_THREADS + (1 if index < count % PRODUCER_THREADS else 0)
        # Stagger the paced threads so their sends interleave evenly.
        due = started + index * interval / PRODUCER_THREADS
        for _ in range(quota):
            now = time.perf_counter()
            if now > deadline:
                return
            if interval:
                if due > now:
                    time.sleep(due - now)
                due += interval
            service.submit(channel, fields)
            sent[index] += 1

    with ThreadPoolExecutor(PRODUCER_THREADS) as executor:
        list(executor.map(run, range(PRODUCER_THREADS)))
    return Produced(sum(sent), time.perf_counter() - started)


def steady_rate(finished: list[datetime]) -> float:
    """Completions per second over the middle 80% of ``finished`` (sorted)."""
    n = len(finished)
    if n < 2:
        return 0.0
    low, high = (n // 10, n - 1 - n // 10) if n >= 20 else (0, n - 1)
    span = (finished[high] - finished[low]).total_seconds()
    return (high - low) / span if span > 0 else 0.0


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (unsorted); NaN-free, 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def latencies_ms(env: BenchEnv, channel: Channel) -> list[float]:
    return [(done - created).total_seconds() * 1000 for created, done in env.completions(channel)]
