"""Service fixtures: the real PostgreSQL, RabbitMQ and Redis of this machine.

Each test run gets its own PostgreSQL database (migrated with Alembic) and its own RabbitMQ
virtual host, both removed at the end, so runs never see each other's data or messages.
As in production, the tables belong to the migrating role (``database_url``, the owner) and
the application connects as another role (``app_database_url``: not the owner, not a
superuser, NOBYPASSRLS), so PostgreSQL row-level security applies to everything the code
under test does.
Between tests every table is emptied, every queue purged and the Redis database (rate-limit
budgets, breaker state) flushed. If a service is down the run
fails at once with the command that starts it: a skipped integration test proves nothing.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pika
import psycopg
import pytest
import redis as redis_lib
from sqlalchemy import text

from shared.broker import amqp_url_with_defaults, get_broker, reset_broker
from shared.channels import Channel
from shared.config import Settings, set_settings
from shared.db.models import Base
from shared.db.session import dispose_all, get_engine
from shared.templates.store import forget_cache as forget_templates
from tests.services import create_database, create_vhost, delete_vhost, drop_database, purge_queues
from tests.sinks.smtp_sink import SmtpSink
from tests.waiting import wait_until

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_HOST = os.environ.get("TEST_AMQP_HOST", "127.0.0.1")
AMQP_PORT = int(os.environ.get("TEST_AMQP_PORT", "5672"))
#: Each pytest-xdist worker (gw0, gw1, …) gets its own Redis database, counted down from the
#: configured one: fixtures flush it before every test. PostgreSQL and RabbitMQ are per
#: session already (``run_id``).
_REDIS_BASE_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
_XDIST_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
REDIS_URL = _REDIS_BASE_URL.rsplit("/", 1)[0] + f"/{int(_REDIS_BASE_URL.rsplit('/', 1)[1]) - _XDIST_WORKER}"
#: The application's database role in tests (shared by runs; each run grants it its own database).
APP_ROLE = os.environ.get("TEST_PG_APP_ROLE", "kai_app_test")

HOW_TO_START = {
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "RabbitMQ": "rabbitmq-server -detached",
    "Redis": 'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no',
}

SERVER_KEY = "test-server-key-" + secrets.token_hex(8)
ROTATED_KEY = "test-rotated-key-" + secrets.token_hex(8)
USER_TOKEN_SECRET = secrets.token_urlsafe(32)
WEBHOOK_SECRET = "whsec_" + __import__("base64").b64encode(secrets.token_bytes(32)).decode()
#: Fernet key sealing endpoint secrets at rest (urlsafe base64 of 32 bytes).
WEBHOOK_ENCRYPTION_KEY = __import__("base64").urlsafe_b64encode(secrets.token_bytes(32)).decode()

#: Every queue the fleet uses, with its delay and dead-letter queues.
ALL_QUEUES = [
    q for name in [*(c.queue_name for c in Channel), "events"] for q in (name, f"{name}.DQ", f"{name}.XQ")
]


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``pytest.mark.anyio``) run on asyncio, the loop the workers use."""
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def _json_logs_on_stderr() -> None:
    """Logs as in production (JSON on stderr), keeping stdout for what commands print."""
    from shared.logging import configure_logging

    configure_logging("WARNING")


def _require(name: str, host: str, port: int) -> None:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        pytest.exit(
            f"{name} is not reachable on {host}:{port}; start it with: {HOW_TO_START[name]}", returncode=3
        )


@pytest.fixture(scope="session")
def run_id() -> str:
    return secrets.token_hex(4)


@pytest.fixture(scope="session")
def database_url(run_id: str) -> Iterator[str]:
    _require("PostgreSQL", "127.0.0.1", 5432)
    name = f"kai_test_{run_id}"
    url = create_database(PG_ADMIN_URL, name)
    _grant_app_role(url.replace("postgresql+psycopg://", "postgresql://"), name)
    yield url
    dispose_all()
    drop_database(PG_ADMIN_URL, name)


def _grant_app_role(owner_url: str, database: str) -> None:
    """Create the application role if missing (idempotent, concurrent runs race here) and
    give it data access to this run's database, but no ownership."""
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute(
            f"""
            DO $$ BEGIN
              IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
              END IF;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END $$
            """
        )
        conn.execute(f'GRANT CONNECT ON DATABASE "{database}" TO {APP_ROLE}')
        for grant in APP_GRANTS:
            conn.execute(grant.format(role=APP_ROLE))


#: What the application role may do, as the README's recipe grants it: only what the code
#: does. No table is granted wholesale (``alembic_version`` stays the migrating owner's),
#: DELETE only where the code deletes (discarding unconfirmed messages and events, the
#: publish relay, retention, removing rules and endpoints, purging closed digests), and the
#: webhook delivery log is append-only. Sequences: USAGE for ``nextval`` only, never ``setval``.
APP_GRANTS = (
    "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT SELECT, INSERT, UPDATE ON notification_logs, notifications, event_logs,"
    " user_notification_preferences, user_contacts, message_templates, notification_rules,"
    " webhook_configurations, pending_publishes TO {role}",
    "GRANT DELETE ON notification_logs, notifications, event_logs, notification_rules,"
    " webhook_configurations, pending_publishes TO {role}",
    "GRANT SELECT, INSERT ON webhook_delivery_logs, message_receipts TO {role}",
    "GRANT SELECT, INSERT, DELETE ON email_suppressions TO {role}",
    "GRANT SELECT, INSERT, UPDATE ON creation_idempotency_keys TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON digest_buckets, digest_items TO {role}",
    "GRANT SELECT, INSERT, DELETE ON analytics_events TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON push_targets TO {role}",
    "GRANT SELECT, INSERT, UPDATE ON analytics_counted, analytics_hourly, analytics_daily, experiments"
    " TO {role}",
    "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}",
)


@pytest.fixture(scope="session")
def app_database_url(database_url: str) -> str:
    """The same database as the application sees it: through the non-owner application role."""
    scheme, rest = database_url.split("://", 1)
    return f"{scheme}://{APP_ROLE}@{rest.split('@', 1)[1]}"


@pytest.fixture(scope="session")
def broker_url(run_id: str) -> Iterator[str]:
    _require("RabbitMQ", AMQP_HOST, AMQP_PORT)
    vhost = f"kai_test_{run_id}"
    yield create_vhost(vhost, AMQP_HOST, AMQP_PORT)
    delete_vhost(vhost)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    host, port = "127.0.0.1", 6379
    _require("Redis", host, port)
    client = redis_lib.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()
    yield REDIS_URL


@pytest.fixture(scope="session")
def base_env(
    database_url: str,
    app_database_url: str,
    broker_url: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    """The environment of a production-shaped deployment on the local services, with retry
    delays shortened so retry paths finish in test time."""
    return {
        "DATABASE_URL": app_database_url,
        "MIGRATION_DATABASE_URL": database_url,
        "BROKER_URL": broker_url,
        "REDIS_URL": redis_url,
        "API_KEYS": f"{SERVER_KEY},{ROTATED_KEY}",
        "USER_TOKEN_SECRET": USER_TOKEN_SECRET,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "KAI_VAR_DIR": str(tmp_path_factory.mktemp("var")),
        "EMAIL_FROM": "KAI Tests <noreply@kai.test>",
        "EMAIL_RETRY_DELAY": "50",
        "SMS_RETRY_DELAY": "50",
        "WEBHOOK_RETRY_DELAY": "50",
        "IN_APP_RETRY_DELAY": "50",
        "PUSH_RETRY_DELAY": "50",
        "CHAT_RETRY_DELAY": "50",
        "EMAIL_MAX_RETRIES": "2",
        "SMS_MAX_RETRIES": "2",
        "WEBHOOK_MAX_RETRIES": "2",
        "IN_APP_MAX_RETRIES": "2",
        "PUSH_MAX_RETRIES": "2",
        "CHAT_MAX_RETRIES": "2",
        "WEBHOOK_TIMEOUT": "2000",
        "WEBHOOK_RETRY_SCHEDULE": "50,100",
        "WEBHOOK_ENCRYPTION_KEYS": WEBHOOK_ENCRYPTION_KEY,
        # The receivers of the tests listen on loopback, which a deployment refuses by default.
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        "EMAIL_TIMEOUT": "3000",
        "SMS_TIMEOUT": "3000",
        "DELIVERY_LEASE": "3000",
        "SCHEDULER_INTERVAL": "100",
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def make_settings(base_env: dict[str, str]) -> Callable[..., Settings]:
    def make(**overrides: str) -> Settings:
        env = {**base_env, **overrides}
        return Settings.from_env(env)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Iterator[Settings]:
    value = make_settings()
    set_settings(value)
    yield value
    set_settings(None)


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    """A real SMTP server on loopback (aiosmtpd) that keeps what it receives."""
    with SmtpSink() as sink:
        yield sink


def _amqp(broker_url: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(amqp_url_with_defaults(broker_url)))


class Queues:
    """Looks at the test virtual host's queues directly, beside Dramatiq."""

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url

    def depth(self, name: str) -> int:
        return self.depths([name])[name]

    def depths(self, names: list[str] | None = None) -> dict[str, int]:
        connection = _amqp(self.broker_url)
        result: dict[str, int] = {}
        try:
            for name in names or ALL_QUEUES:
                channel = connection.channel()
                try:
                    result[name] = int(channel.queue_declare(name, passive=True).method.message_count)
                    channel.close()
                except pika.exceptions.ChannelClosedByBroker:
                    result[name] = 0  # never declared: empty
        finally:
            connection.close()
        return result

    def take(self, name: str) -> list[dramatiq.Message[Any]]:
        """Every message on queue ``name``, taken off it (none is running a consumer)."""
        connection = _amqp(self.broker_url)
        taken: list[dramatiq.Message[Any]] = []
        try:
            channel = connection.channel()
            while True:
                method, _, body = channel.basic_get(name, auto_ack=True)
                if method is None:
                    return taken
                taken.append(dramatiq.Message.decode(body))
        finally:
            connection.close()

    def purge_all(self) -> None:
        purge_queues(self.broker_url, ALL_QUEUES)


@pytest.fixture
def queues(broker_url: str) -> Queues:
    return Queues(broker_url)


@pytest.fixture(autouse=True)
def _clean_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """Empty tables and queues before each test that uses the services."""
    if "database_url" in request.fixturenames:
        engine = get_engine(request.getfixturevalue("database_url"))
        with engine.begin() as conn:
            names = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
            conn.execute(text(f"TRUNCATE {names} CASCADE"))
        forget_templates()
    if "broker_url" in request.fixturenames:
        Queues(request.getfixturevalue("broker_url")).purge_all()
    if "redis_url" in request.fixturenames:
        client = redis_lib.Redis.from_url(request.getfixturevalue("redis_url"))
        client.flushdb()
        client.close()
    yield
    reset_broker()


class Fleet:
    """The channel actors running in this process on the real RabbitMQ broker: the same
    actors ``kai-messaging worker`` runs, consuming the test virtual host's queues."""

    def __init__(
        self, settings: Settings, channels: list[Channel], threads: int, events: bool = False
    ) -> None:
        import dramatiq

        from workers.actors import declare_all
        from workers.scheduler import SchedulerMiddleware

        reset_broker()
        self.settings = settings
        self.broker = get_broker(settings)
        self.broker.add_middleware(SchedulerMiddleware(settings))
        self.pipelines = declare_all(self.broker, settings)
        names = [c.queue_name for c in channels] + (["events"] if events else [])
        self.worker = dramatiq.Worker(
            self.broker,
            queues={q for name in names for q in (name, f"{name}.DQ")},
            worker_threads=threads,
            worker_timeout=100,
        )

    def start(self) -> Fleet:
        self.worker.start()
        self.stopped = False
        return self

    def stop(self) -> None:
        # Once only: Dramatiq keeps one event loop per process, and stopping a stopped worker
        # again would stop the loop of the fleet started after it.
        if self.stopped:
            return
        self.stopped = True
        # The pipelines close with the worker, on its event loop (workers.actors.ClosePipelines).
        self.worker.stop()
        reset_broker()


@pytest.fixture
def fleet(request: pytest.FixtureRequest) -> Iterator[Callable[..., Fleet]]:
    started: list[Fleet] = []

    def start(
        settings: Settings, channels: list[Channel] | None = None, threads: int = 4, events: bool = False
    ) -> Fleet:
        """Run the actors of ``channels`` (all by default), and of events with ``events=True``."""
        set_settings(settings)
        f = Fleet(settings, channels or list(Channel), threads, events).start()
        started.append(f)
        return f

    yield start
    for f in started:
        f.stop()


def final_status(service: Any, message_id: str, timeout: float = 20) -> dict[str, Any]:
    """Wait until the message reaches a terminal state and return its status view."""
    terminal = {"sent", "delivered", "failed", "skipped", "canceled"}
    view: dict[str, Any] = {}

    def done() -> bool:
        nonlocal view
        view = service.get_status(message_id)
        return view["status"] in terminal

    wait_until(done, timeout=timeout, message=lambda: f"message {message_id} still {view.get('status')}")
    return view


def settings_with(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, **changes)


__all__ = ["Fleet", "Path", "Queues", "final_status", "settings_with"]
