"""Throwaway PostgreSQL databases and RabbitMQ virtual hosts on the local services.

The test suite and the benchmarks both run against scratch copies they create and remove,
so neither ever sees the other's (or a previous run's) data or messages.
"""

from __future__ import annotations

import subprocess
from urllib.parse import quote

import psycopg

from migrations.migrate import upgrade


def create_database(admin_url: str, name: str) -> str:
    """Create and migrate database ``name``; returns its SQLAlchemy URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    upgrade(url)
    return url


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_vhost(name: str, host: str, port: int) -> str:
    """Create virtual host ``name`` for the guest user; returns its AMQP URL."""
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", name], check=True, capture_output=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    return f"amqp://guest:guest@{host}:{port}/{quote(name, safe='')}"


def delete_vhost(name: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], check=False, capture_output=True)


def purge_queues(broker_url: str, names: list[str]) -> None:
    """Empty the named queues; a queue never declared is already empty."""
    import pika

    from shared.broker import amqp_url_with_defaults

    connection = pika.BlockingConnection(pika.URLParameters(amqp_url_with_defaults(broker_url)))
    try:
        for name in names:
            channel = connection.channel()
            try:
                channel.queue_purge(name)
                channel.close()
            except pika.exceptions.ChannelClosedByBroker:
                pass
    finally:
        connection.close()
