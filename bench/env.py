"""The scratch deployment a benchmark run measures: its own PostgreSQL database and RabbitMQ
virtual host (removed afterwards), the environment every child process gets, and the
database readings the end-to-end rows are computed from."""

from __future__ import annotations

import base64
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Select, text
from sqlalchemy.exc import OperationalError

from migrations.migrate import upgrade
from shared.broker import reset_broker
from shared.channels import Channel
from shared.config import Settings, set_settings
from shared.db.models import Base
from shared.db.rls import system_scope
from shared.db.session import dispose_all, get_engine
from shared.logging import configure_logging
from tests.services import create_database, create_vhost, delete_vhost, drop_database, purge_queues

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_HOST = "127.0.0.1"
AMQP_PORT = 5672

#: Statuses after which a message needs nothing more from the fleet.
TERMINAL = ("sent", "delivered", "failed", "skipped")

#: How often completion is polled while waiting for a batch to drain.
POLL_INTERVAL_S = 0.1
#: Tries of the between-stage TRUNCATE, which a deadlock with a live writer may cancel.
RESET_ATTEMPTS = 5
#: How often an in-process fleet's progress is polled: its figures are rates over seconds.
FLEET_POLL_INTERVAL_S = 0.02


@dataclass
class BenchEnv:
    database_url: str
    broker_url: str
    api_key: str
    env: dict[str, str] = field(default_factory=dict)

    def settings(self, **overrides: str) -> Settings:
        return Settings.from_env({**self.env, **overrides})

    def child_env(self, **overrides: str) -> dict[str, str]:
        return {**self.env, **overrides}

    def reset(self) -> None:
        """Empty every table and queue between benchmarks. Something may still be writing (the
        gateway stage resets between its single and its batch sends, the gateway still
        finishing the last requests' rows and markers), and TRUNCATE locks the tables one by
        one: PostgreSQL may then pick it as a deadlock victim, and it is simply run again."""
        names = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
        for attempt in range(RESET_ATTEMPTS):
            try:
                with get_engine(self.database_url).begin() as conn:
                    conn.execute(text(f"TRUNCATE {names} CASCADE"))
                break
            except OperationalError as exc:
                if "deadlock detected" not in str(exc) or attempt == RESET_ATTEMPTS - 1:
                    raise
        queues = [q for c in Channel for q in (c.queue_name, f"{c.queue_name}.DQ", f"{c.queue_name}.XQ")]
        purge_queues(self.broker_url, queues)

    @property
    def database_port(self) -> int:
        return urlsplit(self.database_url).port or 5432

    def busy_sessions(self, client_ports: list[int]) -> int:
        """How many of the database sessions from ``client_ports`` are running a statement or
        inside a transaction (and so may hold locks)."""
        if not client_ports:
            return 0
        with get_engine(self.database_url).connect() as conn:
            value = conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE client_port = ANY(:p) AND state <> 'idle'"),
                {"p": client_ports},
            ).scalar_one()
        return int(value)

    def count_done(self, channel: Channel) -> int:
        with get_engine(self.database_url).connect() as conn:
            value = conn.execute(
                text("SELECT count(*) FROM notification_logs WHERE channel = :c AND status = ANY(:s)"),
                {"c": channel.value, "s": list(TERMINAL)},
            ).scalar_one()
        return int(value)

    def wait_done(self, channel: Channel, count: int, timeout_s: float) -> int:
        """Wait until ``count`` messages of ``channel`` are finished or the time is up;
        returns how many are."""
        deadline = time.monotonic() + timeout_s
        done = self.count_done(channel)
        while done < count and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL_S)
            done = self.count_done(channel)
        return done

    def completions(self, channel: Channel) -> list[tuple[datetime, datetime]]:
        """(created_at, finished_at) of every successfully delivered message of ``channel``,
        finished being delivered_at for in-app (the inbox row) and sent_at otherwise."""
        with get_engine(self.database_url).connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT created_at, COALESCE(delivered_at, sent_at) FROM notification_logs "
                    "WHERE channel = :c AND status IN ('sent', 'delivered') ORDER BY 2"
                ),
                {"c": channel.value},
            ).all()
        return [(r[0], r[1]) for r in rows]


@contextmanager
def scratch_env() -> Iterator[BenchEnv]:
    """A throwaway database and virtual host, and the environment pointing at them."""
    run_id = secrets.token_hex(4)
    name = f"kai_bench_{run_id}"
    database_url = create_database(PG_ADMIN_URL, name)
    var = tempfile.TemporaryDirectory(prefix=name)
    var_dir = var.name
    try:
        broker_url = create_vhost(name, AMQP_HOST, AMQP_PORT)
        try:
            api_key = "bench-key-" + secrets.token_hex(8)
            bench = BenchEnv(
                database_url=database_url,
                broker_url=broker_url,
                api_key=api_key,
                env={
                    "DATABASE_URL": database_url,
                    "BROKER_URL": broker_url,
                    "REDIS_URL": "redis://127.0.0.1:6379/14",
                    "API_KEYS": api_key,
                    "USER_TOKEN_SECRET": secrets.token_urlsafe(32),
                    "WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
                    # The bench's receivers listen on loopback, refused by default once real
                    # services are configured.
                    "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
                    "KAI_VAR_DIR": var_dir,
                    # Children's temporary files (the pools' and gateways' metrics) go with it.
                    "TMPDIR": var_dir,
                    "EMAIL_FROM": "KAI Bench <noreply@kai.test>",
                    "LOG_LEVEL": "WARNING",
                    # Budgets far beyond this machine: the limits are checked (and cost what
                    # they cost) but never refuse the load, which uses one key and one number.
                    "RATE_LIMIT_SEND": "1000000000/min",
                    "RATE_LIMIT_EVENTS": "1000000000/min",
                    "RATE_LIMIT_READ": "1000000000/min",
                    "SMS_RECIPIENT_LIMIT_PER_HOUR": "1000000000",
                    "EMAIL_RECIPIENT_LIMIT_PER_HOUR": "1000000000",
                    "PUSH_RECIPIENT_LIMIT_PER_HOUR": "1000000000",
                    "CHAT_RECIPIENT_LIMIT_PER_HOUR": "1000000000",
                },
            )
            set_settings(bench.settings())
            yield bench
        finally:
            set_settings(None)
            reset_broker()
            delete_vhost(name)
    finally:
        dispose_all()
        drop_database(PG_ADMIN_URL, name)
        var.cleanup()


@contextmanager
def in_process_fleet(env: BenchEnv) -> Iterator[Settings]:
    """Settings for a fleet run inside this process (a row of ``make bench``) on the emptied
    database and virtual host of ``env``, with a var directory of its own; the broker and the
    settings are forgotten afterwards."""
    env.reset()
    with tempfile.TemporaryDirectory() as var_dir:
        settings = env.settings(KAI_VAR_DIR=var_dir)
        set_settings(settings)
        try:
            yield settings
        finally:
            reset_broker()
            set_settings(None)


@contextmanager
def standalone_fleet() -> Iterator[Settings]:
    """Settings for a fleet run inside this process on a migrated scratch deployment, logging
    at WARNING: a bench module run on its own (``python -m bench.<row>``)."""
    with scratch_env() as bench:
        settings = bench.settings(LOG_LEVEL="WARNING")
        configure_logging(settings.log_level)
        upgrade(bench.database_url)
        yield settings


def wait_count(settings: Settings, query: Select[Any], expected: int, deadline: float, what: str) -> float:
    """Poll the count ``query`` until it reaches ``expected``; the ``time.perf_counter()`` it
    did. Past ``deadline`` (a perf_counter time) the bench ends, naming ``what``."""

    def count() -> int:
        with system_scope(settings.database_url) as session:
            return int(session.scalar(query) or 0)

    while (found := count()) < expected:
        if time.perf_counter() > deadline:
            raise SystemExit(f"bench: {what}: only {found} of {expected}")
        time.sleep(FLEET_POLL_INTERVAL_S)
    return time.perf_counter()
