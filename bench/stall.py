"""Row 6.stall: healthy webhooks beside receivers that stall their answer's headers.

Sixteen ad-hoc webhooks go to sixteen receivers (one port each) that write their status line
and headers one byte a second; every attempt holds a worker slot until WEBHOOK_TIMEOUT, then
retries and stalls again. Meanwhile webhooks to the fast receiver are sent at a steady pace,
and their enqueue→delivered latency is compared with the same pool's without the stall.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench.env import BenchEnv
from bench.fleet import latencies_ms, percentile, produce, send_fields, webhook_pool
from bench.pools import Pools
from producer.service import NotificationService
from shared.channels import Channel

STALLING_RECEIVERS = 16
#: A slot per stalled attempt, and as many again for everyone else.
THREADS = 32
#: Healthy webhooks per second during each window: well below what one process delivers.
HEALTHY_RATE = 100.0
ATTEMPT_TIMEOUT_MS = 5_000
#: The answer, a byte a second: longer than any attempt may wait.
DRIPPED = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Padding: " + b"p" * 64 + b"\r\n\r\n"
DRAIN_LIMIT_S = 30.0
WARM_UP_S = 2.0


@dataclass(frozen=True)
class StallResult:
    base_p50_ms: float
    base_p99_ms: float
    p50_ms: float
    p99_ms: float
    delivered: int
    sent: int
    #: The most stalled requests the receivers held at once.
    max_stalled: int


class _Stalling:
    """Receivers on STALLING_RECEIVERS ports of one asyncio loop in a thread of this process
    (a byte a second costs nothing)."""

    def __init__(self) -> None:
        self.ports: list[int] = []
        self._dripping: set[asyncio.Task[Any]] = set()
        self.in_flight = 0
        self.max_in_flight = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stalling-receivers", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        servers = [await asyncio.start_server(self._drip, "127.0.0.1", 0) for _ in range(STALLING_RECEIVERS)]
        self.ports = [s.sockets[0].getsockname()[1] for s in servers]
        self._ready.set()
        self._stopping = asyncio.Event()
        await self._stopping.wait()
        for server in servers:
            server.close()
        for task in self._dripping:
            task.cancel()
        await asyncio.gather(*self._dripping, return_exceptions=True)

    async def _drip(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._dripping.add(task)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await reader.read(65536)
            for byte in DRIPPED:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1.0)
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            return  # stopped at the end of the row: the connection just closes
        finally:
            self.in_flight -= 1
            self._dripping.discard(task)
            writer.close()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)


@contextmanager
def stalling_receivers() -> Iterator[_Stalling]:
    receivers = _Stalling()
    receivers.start()
    try:
        yield receivers
    finally:
        receivers.stop()


def _healthy_window(env: BenchEnv, receiver_url: str, seconds: float) -> tuple[list[float], int]:
    channel = Channel.WEBHOOK
    paced = produce(
        env,
        channel,
        send_fields(channel, receiver_url),
        count=int(HEALTHY_RATE * seconds),
        time_limit_s=seconds,
        rate=HEALTHY_RATE,
    )
    env.wait_done(channel, paced.count, DRAIN_LIMIT_S)
    return latencies_ms(env, channel), paced.count


def measure(env: BenchEnv, pools: Pools, receiver_url: str, *, seconds: float) -> StallResult:
    [pool] = pools.start(webhook_pool(1, THREADS, WEBHOOK_TIMEOUT=str(ATTEMPT_TIMEOUT_MS)))
    with pool.released():
        env.reset()
        # A warm-up, so the pool's connections are open before the baseline is timed.
        _healthy_window(env, receiver_url, WARM_UP_S)
        env.reset()
        base, _ = _healthy_window(env, receiver_url, seconds)
        env.reset()
        with stalling_receivers() as receivers:
            service = NotificationService(env.settings())
            for port in receivers.ports:
                service.send_webhook(url=f"http://127.0.0.1:{port}/hooks", payload={"stall": port})
            deadline = time.monotonic() + 10
            while receivers.in_flight < STALLING_RECEIVERS and time.monotonic() < deadline:
                time.sleep(0.05)
            stalled, sent = _healthy_window(env, receiver_url, seconds)
            most = receivers.max_in_flight
    pools.stop(pool)
    return StallResult(
        base_p50_ms=percentile(base, 0.50),
        base_p99_ms=percentile(base, 0.99),
        p50_ms=percentile(stalled, 0.50),
        p99_ms=percentile(stalled, 0.99),
        delivered=len(stalled),
        sent=sent,
        max_stalled=most,
    )
