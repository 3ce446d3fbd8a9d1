"""In-app inbox benchmark: ``python -m bench.inbox [--quick]``.

Seeds a throwaway PostgreSQL database with 1,000,000 notifications over 10,000 users
(``--quick``: 100,000), starts the real gateway (uvicorn, one process, loopback) and measures:

* unread count and the first feed page under 200 concurrent requests (p50/p99),
* realtime delivery from the in-app worker's commit to an SSE client (p50/p99), idle and with
  every stream of the capacity test open,
* how many concurrent SSE streams one gateway process holds,
* the same two queries straight against PostgreSQL, to separate database from gateway cost.

Prints a table and writes ``bench/results/inbox.json``. Needs the local PostgreSQL and Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import psycopg

from bench.loadgen import Connection, closed_loop, percentile
from bench.sse import SseStream
from migrations.migrate import upgrade
from shared.config import Settings
from shared.payloads import InAppPayload

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
RESULTS = Path(__file__).parent / "results" / "inbox.json"

USERS = 10_000
ROWS = 1_000_000
QUICK_ROWS = 100_000
CONCURRENCY = 200
REQUESTS = 20_000
QUICK_REQUESTS = 5_000
#: Share of seeded notifications left unread.
UNREAD_SHARE = 0.3
#: Seeded notifications are spread over this many days.
SPREAD_DAYS = 30

SSE_TARGET = 5_000
QUICK_SSE_TARGET = 1_000
#: Streams opened at once while filling up; and the time allowed for the whole fill.
SSE_WAVE = 250
SSE_FILL_SECONDS = 240

DELIVERY_SAMPLES = 200
QUICK_DELIVERY_SAMPLES = 50
#: Pause between deliveries, so each is measured on its own (seconds).
DELIVERY_GAP_SECONDS = 0.02

TARGETS_MS = {"unread_count_p99": 5.0, "feed_first_page_p99": 10.0, "delivery_p99": 50.0}


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def summary(latencies: list[float]) -> dict[str, float]:
    return {"p50_ms": ms(percentile(latencies, 0.5)), "p99_ms": ms(percentile(latencies, 0.99))}


# -- the database ---------------------------------------------------------------------------


def create_database() -> tuple[str, str]:
    name = f"kai_bench_inbox_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(dsn: str, rows: int) -> float:
    """Insert ``rows`` notifications over USERS users in one statement; returns seconds."""
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO notifications (id, user_id, title, message, type, action_url, data,
                                       created_at, read_at, deleted_at)
            SELECT gen_random_uuid()::text,
                   'user-' || (g %% %(users)s),
                   'Notification ' || g,
                   'Something happened that you may want to look at (#' || g || ').',
                   (ARRAY['info', 'success', 'warning', 'error'])[1 + g %% 4],
                   '/items/' || g,
                   jsonb_build_object('n', g),
                   now() - random() * make_interval(days => %(days)s),
                   CASE WHEN random() < %(unread)s THEN NULL ELSE now() END,
                   NULL
            FROM generate_series(1, %(rows)s) AS g
            """,
            {"users": USERS, "rows": rows, "days": SPREAD_DAYS, "unread": UNREAD_SHARE},
        )
        conn.execute("VACUUM ANALYZE notifications")
    return time.perf_counter() - started


def query_directly(dsn: str, samples: int) -> dict[str, Any]:
    """The gateway's two queries run straight on PostgreSQL, one at a time."""
    results: dict[str, Any] = {}
    queries = {
        "unread_count": "SELECT count(*) FROM notifications WHERE user_id = %s "
        "AND deleted_at IS NULL AND read_at IS NULL",
        "feed_first_page": "SELECT * FROM notifications WHERE user_id = %s AND deleted_at IS NULL "
        "ORDER BY created_at DESC, id DESC LIMIT 21",
    }
    with psycopg.connect(dsn) as conn:
        for name, sql in queries.items():
            latencies = []
            for _ in range(samples):
                user = f"user-{random.randrange(USERS)}"
                started = time.perf_counter()
                conn.execute(sql, (user,), prepare=True).fetchall()
                latencies.append(time.perf_counter() - started)
            results[name] = summary(latencies)
    return results


# -- the gateway ----------------------------------------------------------------------------


class Gateway:
    """The real gateway in its own process (uvicorn, one worker)."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        self.port = port
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "producer.gateway.asgi:build",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
                "--backlog",
                "4096",
            ],
            env=env,
        )

    async def ready(self, token: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                connection = Connection("127.0.0.1", self.port)
                await connection.open()
                status, _ = await connection.get(
                    "/api/notifications/unread-count", {"Authorization": f"Bearer {token}"}
                )
                connection.close()
                if status == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError("gateway did not start")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- measurements ---------------------------------------------------------------------------


async def request_latencies(port: int, tokens: list[str], path: str, total: int) -> dict[str, Any]:
    def request(_n: int) -> tuple[str, dict[str, str]]:
        return path, {"Authorization": f"Bearer {random.choice(tokens)}"}

    loaded, wall, errors = await closed_loop("127.0.0.1", port, CONCURRENCY, total, request)
    alone, _, _ = await closed_loop("127.0.0.1", port, 1, min(total, 1000), request)
    return {
        "concurrency": CONCURRENCY,
        "requests": total,
        **summary(loaded),
        "throughput_rps": round(total / wall),
        "errors": errors,
        "one_at_a_time": summary(alone),
    }


class DeliveryClock:
    """Times each notification from the in-app worker's commit (the moment it announces) to
    its arrival on an SSE client."""

    def __init__(self) -> None:
        self.committed: dict[str, float] = {}
        self.arrived: dict[str, float] = {}
        self.lock = threading.Lock()

    def install(self) -> None:
        from shared.realtime.announce import announce as real
        from workers import in_app

        def timed(settings: Settings, *events: Any) -> None:
            for event in events:
                if event.kind == "notification":
                    with self.lock:
                        self.committed[event.data["id"]] = time.perf_counter()
            real(settings, *events)

        # The worker module looks ``announce`` up at call time, so replacing it times every
        # publish right after the inbox commit.
        vars(in_app)["announce"] = timed

    def latencies(self) -> list[float]:
        return [self.arrived[i] - self.committed[i] for i in self.arrived if i in self.committed]


async def measure_delivery(port: int, settings: Settings, secret: str, samples: int) -> dict[str, Any]:
    from shared.db.session import dispose_loop_engines
    from workers.in_app import DatabaseInbox
    from workers.providers.base import Outgoing
    from workers.providers.inbox import InboxProvider

    user = f"rt-{uuid.uuid4().hex[:8]}"
    clock = DeliveryClock()
    clock.install()
    inbox = DatabaseInbox(settings)
    provider = InboxProvider(inbox)
    stream = SseStream("127.0.0.1", port, token_for(user, secret))
    await stream.open()
    await stream.next_frame()  # the unread count sent on connect

    async def listen() -> None:
        while len(clock.arrived) < samples:
            frame = await stream.next_frame()
            if frame.kind == "notification":
                clock.arrived[frame.data["id"]] = time.perf_counter()

    listener = asyncio.create_task(listen())
    for n in range(samples):
        message = Outgoing(
            id=str(uuid.uuid4()),
            attempt=1,
            payload=InAppPayload(title=f"realtime {n}", message="timing"),
            user_id=user,
        )
        await provider.send(message)
        await asyncio.sleep(DELIVERY_GAP_SECONDS)
    await asyncio.wait_for(listener, timeout=30)
    stream.close()
    await inbox.close()
    await dispose_loop_engines()
    return {"samples": samples, **summary(clock.latencies())}


async def hold_streams(port: int, secret: str, target: int) -> tuple[list[SseStream], int]:
    """Open up to ``target`` streams (distinct users), each confirmed by its first event."""
    opened: list[SseStream] = []
    failures = 0
    deadline = time.monotonic() + SSE_FILL_SECONDS

    async def one(n: int) -> SseStream | None:
        stream = SseStream("127.0.0.1", port, token_for(f"sse-{n}", secret))
        try:
            await stream.open()
            if stream.status != 200:
                stream.close()
                return None
            await asyncio.wait_for(stream.next_frame(), timeout=30)
            return stream
        except (OSError, EOFError, TimeoutError, asyncio.IncompleteReadError):
            stream.close()
            return None

    while len(opened) < target and time.monotonic() < deadline:
        wave = await asyncio.gather(
            *(one(len(opened) + i) for i in range(min(SSE_WAVE, target - len(opened))))
        )
        good = [s for s in wave if s is not None]
        failures += len(wave) - len(good)
        opened += good
        if len(good) < len(wave) / 2:
            break
    return opened, failures


_tokens: dict[str, str] = {}


def token_for(user: str, secret: str) -> str:
    token = _tokens.get(user)
    if token is None:
        claims = {"sub": user, "exp": int(time.time()) + 3600}
        token = _tokens[user] = jwt.encode(claims, secret, algorithm="HS256")
    return token


# -- the run --------------------------------------------------------------------------------


async def run(quick: bool) -> dict[str, Any]:
    rows = QUICK_ROWS if quick else ROWS
    total = QUICK_REQUESTS if quick else REQUESTS
    sse_target = QUICK_SSE_TARGET if quick else SSE_TARGET
    samples = QUICK_DELIVERY_SAMPLES if quick else DELIVERY_SAMPLES
    file_limit = raise_file_limit()
    secret = secrets.token_urlsafe(32)
    name, dsn = create_database()
    gateway: Gateway | None = None
    try:
        database_url = dsn.replace("postgresql://", "postgresql+psycopg://")
        upgrade(database_url)
        print(f"seeding {rows:,} notifications over {USERS:,} users …", file=sys.stderr)
        seed_seconds = seed(dsn, rows)
        env = {
            **{k: v for k, v in os.environ.items() if k != "BROKER_URL"},
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "API_KEYS": "bench-" + secrets.token_hex(8),
            "USER_TOKEN_SECRET": secret,
            "WEBHOOK_SECRET": "whsec_" + secrets.token_hex(16),
            "KAI_VAR_DIR": tempfile.mkdtemp(prefix="kai-bench-"),
            "LOG_LEVEL": "WARNING",
            # Checked on every read, but far beyond what the load asks of one user.
            "RATE_LIMIT_READ": "1000000000/min",
        }
        settings = Settings.from_env(env)
        gateway = Gateway(env, free_port())
        tokens = [token_for(f"user-{n}", secret) for n in range(USERS)]
        await gateway.ready(tokens[0])

        print("baseline (GET /healthz, no database) …", file=sys.stderr)
        baseline = await request_latencies(gateway.port, tokens, "/healthz", total)
        print("unread count …", file=sys.stderr)
        unread = await request_latencies(gateway.port, tokens, "/api/notifications/unread-count", total)
        print("first feed page …", file=sys.stderr)
        feed = await request_latencies(gateway.port, tokens, "/api/notifications?limit=20", total)
        print("realtime delivery …", file=sys.stderr)
        delivery_idle = await measure_delivery(gateway.port, settings, secret, samples)
        print(f"holding up to {sse_target:,} streams …", file=sys.stderr)
        streams, failures = await hold_streams(gateway.port, secret, sse_target)
        rss = gateway.rss_mb()
        delivery_loaded = await measure_delivery(gateway.port, settings, secret, samples)
        for stream in streams:
            stream.close()
        direct = query_directly(dsn, 1000)
    finally:
        if gateway is not None:
            gateway.stop()
        drop_database(name)

    return {
        "rows": rows,
        "users": USERS,
        "seed_seconds": round(seed_seconds, 1),
        "cpus": os.cpu_count(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "healthz_baseline": baseline,
        "unread_count": unread,
        "feed_first_page": feed,
        "realtime_delivery": {"idle": delivery_idle, f"with_{len(streams)}_streams_open": delivery_loaded},
        "sse_streams": {
            "target": sse_target,
            "held": len(streams),
            "refused_or_failed": failures,
            "gateway_rss_mb": rss,
            "file_limit": file_limit,
        },
        "postgresql_alone": direct,
        "targets_ms": TARGETS_MS,
    }


def table(result: dict[str, Any]) -> str:
    loaded_key = next(k for k in result["realtime_delivery"] if k != "idle")
    lines = [
        f"in-app inbox: {result['rows']:,} notifications, {result['users']:,} users, {result['cpus']} CPUs",
        f"{'measure':<42}{'p50 ms':>10}{'p99 ms':>10}{'target':>10}{'met':>6}",
    ]

    def row(label: str, values: dict[str, Any], target: float | None) -> None:
        met = "" if target is None else ("yes" if values["p99_ms"] <= target else "no")
        goal = "" if target is None else f"≤{target:g}"
        lines.append(f"{label:<42}{values['p50_ms']:>10}{values['p99_ms']:>10}{goal:>10}{met:>6}")

    row(f"GET /healthz (no database), {CONCURRENCY} concurrent", result["healthz_baseline"], None)
    row(f"unread count, {CONCURRENCY} concurrent", result["unread_count"], TARGETS_MS["unread_count_p99"])
    row("unread count, one at a time", result["unread_count"]["one_at_a_time"], None)
    row("unread count, PostgreSQL alone", result["postgresql_alone"]["unread_count"], None)
    row(
        f"first feed page, {CONCURRENCY} concurrent",
        result["feed_first_page"],
        TARGETS_MS["feed_first_page_p99"],
    )
    row("first feed page, one at a time", result["feed_first_page"]["one_at_a_time"], None)
    row("first feed page, PostgreSQL alone", result["postgresql_alone"]["feed_first_page"], None)
    row("delivery commit → SSE, idle", result["realtime_delivery"]["idle"], TARGETS_MS["delivery_p99"])
    row(
        f"delivery commit → SSE, {loaded_key[5:]}",
        result["realtime_delivery"][loaded_key],
        TARGETS_MS["delivery_p99"],
    )
    lines.append(
        f"throughput: /healthz {result['healthz_baseline']['throughput_rps']} req/s, "
        f"unread count {result['unread_count']['throughput_rps']} req/s, "
        f"feed {result['feed_first_page']['throughput_rps']} req/s; "
        f"load average {result['load_average_at_end']}"
    )
    sse = result["sse_streams"]
    lines.append(
        f"SSE streams held by one gateway process: {sse['held']:,} of {sse['target']:,} "
        f"(gateway RSS {sse['gateway_rss_mb']} MB)"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 notifications, 1,000 streams")
    args = parser.parse_args()
    result = asyncio.run(run(args.quick))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"written to {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
