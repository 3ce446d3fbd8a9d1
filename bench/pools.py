"""The run's worker pools: started together, reused while their settings match, held still
while their queue fills, and killed once their rows are measured.

A throughput row fills a channel's queue while its pool consumes nothing, then times the
pool draining it (bench/fleet.py). Starting a ``kai-messaging worker`` pool costs seconds
(imports, connections, threads) and stopping one gracefully as long again, so a pool is
started before its rows, waited for until every process consumes, and held with SIGSTOP
while its queue fills; SIGCONT lets it drain. A held pool uses no CPU, so pools waiting for
their turn are held too, and the pools of different channels start at the same time.

Two guards keep a held pool from disturbing the rest of the run: it is only held between
two of its transactions (checked in ``pg_stat_activity``), so it never blocks the TRUNCATE
of the next reset; and its AMQP heartbeat is ten minutes instead of one, so RabbitMQ keeps
its connection while it waits. Heartbeats do not touch message handling.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pika
import psutil  # type: ignore[import-untyped]

from bench.env import BenchEnv
from bench.procs import free_port, group_signal, kai, kill, launch
from shared.broker import amqp_url_with_defaults
from shared.channels import Channel

#: How often worker memory is sampled while a pool runs.
RSS_SAMPLE_INTERVAL_S = 0.2
#: How long a pool may take until every process consumes: generous, for a loaded machine.
READY_TIMEOUT_S = 180.0
POLL_S = 0.05
#: The pools' AMQP heartbeat (seconds): longer than any pool waits held in a full run.
HELD_HEARTBEAT_S = 600
#: Tries at holding a pool between two of its transactions before giving up.
HOLD_ATTEMPTS = 200
#: How long a SIGSTOP may take to reach every process of a pool.
STOPPED_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class PoolSpec:
    """What a pool runs: its channel, processes x threads and its extra environment."""

    channel: Channel
    processes: int
    threads: int
    #: Sorted (name, value) pairs, so two specs asking for the same pool compare equal.
    env: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(
        cls, channel: Channel, *, processes: int, threads: int, env: Mapping[str, str] | None = None
    ) -> PoolSpec:
        return cls(channel, processes, threads, tuple(sorted((env or {}).items())))


def _heartbeat_url(broker_url: str) -> str:
    parts = urlsplit(broker_url)
    query = {**dict(parse_qsl(parts.query)), "heartbeat": str(HELD_HEARTBEAT_S)}
    return urlunsplit(parts._replace(query=urlencode(query)))


class Pool:
    """A running ``kai-messaging worker`` pool, the memory its processes use, held or not."""

    def __init__(self, env: BenchEnv, spec: PoolSpec, process: subprocess.Popen[bytes]) -> None:
        self.env = env
        self.spec = spec
        self.process = process
        self.pid = process.pid
        self.peak_rss = 0
        self.held = False
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _processes(self) -> list[psutil.Process]:
        try:
            parent = psutil.Process(self.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def worker_rss(self) -> list[int]:
        """RSS of each worker process (the pool's children; the parent only supervises)."""
        sizes = []
        for process in self._processes()[1:]:
            try:
                sizes.append(process.memory_info().rss)
            except psutil.NoSuchProcess:
                continue
        return sizes

    def _sample(self) -> None:
        while not self._done.wait(RSS_SAMPLE_INTERVAL_S):
            if not self.held:
                sizes = self.worker_rss()
                if sizes:
                    self.peak_rss = max(self.peak_rss, *sizes)

    def _database_ports(self) -> list[int]:
        """Local ports of the pool's connections to PostgreSQL (pg_stat_activity's client_port)."""
        port = self.env.database_port
        ports = []
        for process in self._processes():
            try:
                connections = process.net_connections(kind="tcp")
            except psutil.NoSuchProcess:
                continue
            ports += [c.laddr.port for c in connections if c.raddr and c.raddr.port == port]
        return ports

    def _wait_stopped(self) -> None:
        deadline = time.monotonic() + STOPPED_TIMEOUT_S
        for process in self._processes():
            while time.monotonic() < deadline:
                try:
                    if process.status() in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE):
                        break
                except psutil.NoSuchProcess:
                    break
                time.sleep(0.001)

    def hold(self) -> None:
        """Stop every process of the pool where it is, between two of its transactions."""
        for _ in range(HOLD_ATTEMPTS):
            group_signal(self.process, signal.SIGSTOP)
            self._wait_stopped()
            if not self.env.busy_sessions(self._database_ports()):
                self.held = True
                return
            group_signal(self.process, signal.SIGCONT)
            time.sleep(POLL_S)
        raise RuntimeError(f"worker pool {self.spec} never paused outside a transaction")

    def release(self) -> None:
        group_signal(self.process, signal.SIGCONT)
        self.held = False

    @contextmanager
    def released(self) -> Iterator[Pool]:
        """The pool running for the block, held again after it."""
        self.release()
        try:
            yield self
        finally:
            if self.process.poll() is None:
                self.hold()

    def kill(self) -> None:
        self._done.set()
        kill(self.process)
        self._sampler.join()


class Pools:
    """The pools alive in a run, by spec; every one is killed when the block ends."""

    def __init__(self, env: BenchEnv) -> None:
        self.env = env
        self.running: dict[PoolSpec, Pool] = {}

    def __enter__(self) -> Pools:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self, *specs: PoolSpec) -> list[Pool]:
        """Held, consuming pools for ``specs``, in order. A pool running with the same spec is
        reused; one running another spec for the same channel is killed first (both would
        consume its queue); the new pools start at the same time."""
        channels = {spec.channel for spec in specs}
        for spec, pool in list(self.running.items()):
            if spec.channel in channels and spec not in specs:
                self.stop(pool)
        new = [spec for spec in dict.fromkeys(specs) if spec not in self.running]
        started_at = time.monotonic()
        # A killed pool's consumers must be gone, or they would count as the new pool's.
        self._wait_consumers({spec.channel: 0 for spec in new})
        for spec in new:
            self.running[spec] = self._launch(spec)
        try:
            started = [self.running[spec] for spec in new]
            self._wait_consumers({spec.channel: spec.processes for spec in new}, started)
        except Exception:
            for spec in new:
                self.stop(self.running[spec])
            raise
        for spec in new:
            self.running[spec].hold()
        if new:
            took = time.monotonic() - started_at
            print(f"bench:   {len(new)} pool(s) consuming in {took:.1f} s", file=sys.stderr, flush=True)
        return [self.running[spec] for spec in specs]

    def _launch(self, spec: PoolSpec) -> Pool:
        argv = kai(
            [
                "worker",
                spec.channel.value,
                "--processes",
                str(spec.processes),
                "--threads",
                str(spec.threads),
                # Pools run side by side, so each needs its own metrics port.
                "--metrics-port",
                str(free_port()),
            ]
        )
        overrides = {
            **dict(spec.env),
            "BROKER_URL": _heartbeat_url(self.env.broker_url),
            "METRICS_HOST": "127.0.0.1",
        }
        return Pool(self.env, spec, launch(argv, self.env.child_env(**overrides)))

    def _wait_consumers(self, expected: Mapping[Channel, int], pools: Sequence[Pool] = ()) -> None:
        """Wait until each channel's queue has ``expected`` consumers (one per worker process)."""
        if not expected:
            return
        deadline = time.monotonic() + READY_TIMEOUT_S
        url = amqp_url_with_defaults(self.env.broker_url)
        connection = pika.BlockingConnection(pika.URLParameters(url))
        try:
            waiting = dict(expected)
            while waiting:
                for pool in pools:
                    if pool.process.poll() is not None:
                        raise RuntimeError(f"worker pool {pool.spec} exited with {pool.process.returncode}")
                waiting = {c: n for c, n in waiting.items() if _consumers(connection, c.queue_name) != n}
                if waiting and time.monotonic() > deadline:
                    raise RuntimeError(f"worker pools not consuming after {READY_TIMEOUT_S:.0f} s: {waiting}")
                if waiting:
                    time.sleep(POLL_S)
        finally:
            connection.close()

    def stop(self, pool: Pool) -> None:
        pool.kill()
        self.running.pop(pool.spec, None)

    def close(self) -> None:
        for pool in list(self.running.values()):
            self.stop(pool)


def _consumers(connection: pika.BlockingConnection, queue: str) -> int:
    """Consumers on ``queue``; 0 when it is not declared yet."""
    channel = connection.channel()
    try:
        count: int = channel.queue_declare(queue, passive=True).method.consumer_count
    except pika.exceptions.ChannelClosedByBroker:
        return 0
    channel.close()
    return count
