"""The machine's raw limits, measured in the same run as the fleet they are compared with.

L1: RabbitMQ through pika alone, publishing small persistent messages one at a time with
publisher confirms (as every producer does) and consuming them with one ack each (as every
worker does), on one queue. L2: the local HTTP receiver under wrk, the most webhooks per
second the receiver and the loopback could take if the fleet cost nothing.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pika

from bench.env import BenchEnv
from bench.procs import http_peer
from bench.wrk import run_wrk
from shared.broker import amqp_url_with_defaults

QUEUE = "bench.raw"
#: The broker carries message ids: a UUID-sized body.
BODY = b"0" * 36
#: Publishers at once for the concurrent figure: as many as a gateway has requests in flight
#: on its thread pools, within reason for one Python process.
CONCURRENT_PUBLISHERS = 8
#: Messages the consumer may hold unacknowledged, as a Dramatiq worker with 16 threads.
PREFETCH = 32
#: Concurrent connections for every wrk run against a receiver or gateway.
CONNECTIONS = 64
#: The body of every benchmark webhook: a 1 KiB JSON object.
PAYLOAD_BYTES = 1024


def webhook_payload() -> dict[str, object]:
    return {"event": "order.created", "data": {"orderId": "order-123", "pad": "x" * (PAYLOAD_BYTES - 60)}}


@dataclass(frozen=True)
class RabbitLimit:
    publish_rate: float
    concurrent_publish_rate: float
    consume_rate: float


def _publish(url: str, count: int, deadline: float) -> int:
    """Publish one at a time, each waiting for its confirm, until ``count`` or ``deadline``."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        properties = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
        published = 0
        while published < count and time.perf_counter() < deadline:
            channel.basic_publish("", QUEUE, BODY, properties, mandatory=True)
            published += 1
        return published
    finally:
        connection.close()


def _publish_rate(url: str, publishers: int, count: int, time_limit_s: float) -> tuple[float, int]:
    started = time.perf_counter()
    deadline = started + time_limit_s
    with ThreadPoolExecutor(publishers) as pool:
        counts = list(pool.map(lambda _: _publish(url, count // publishers, deadline), range(publishers)))
    total = sum(counts)
    return total / (time.perf_counter() - started), total


def measure_rabbitmq(env: BenchEnv, *, count: int, time_limit_s: float) -> RabbitLimit:
    url = amqp_url_with_defaults(env.broker_url)
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.queue_declare(QUEUE, durable=True)
        channel.queue_purge(QUEUE)
        single_rate, single = _publish_rate(url, 1, count, time_limit_s)
        concurrent_rate, concurrent = _publish_rate(url, CONCURRENT_PUBLISHERS, count, time_limit_s)
        published = single + concurrent

        channel.basic_qos(prefetch_count=PREFETCH)
        consumed = 0
        started = time.perf_counter()
        deadline = started + time_limit_s
        for method, _props, _body in channel.consume(QUEUE, inactivity_timeout=1.0):
            if method is None:
                break
            channel.basic_ack(method.delivery_tag)
            consumed += 1
            if consumed >= published or time.perf_counter() > deadline:
                break
        consume_s = time.perf_counter() - started
        channel.cancel()
        channel.queue_delete(QUEUE)
    finally:
        connection.close()
    return RabbitLimit(single_rate, concurrent_rate, consumed / consume_s)


def measure_http_sink(*, duration_s: float) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) of the fast receiver under wrk with 1 KiB JSON bodies."""
    import json

    body = json.dumps(webhook_payload())
    with http_peer() as url:
        result = run_wrk(
            f"{url}/hook",
            body,
            connections=CONNECTIONS,
            duration_s=duration_s,
            max_requests=int(100_000 * duration_s),
        )
    return result.rate, result.p50_ms, result.p99_ms
