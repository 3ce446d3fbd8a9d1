"""Publishers that sat idle past the broker's heartbeat deadline publish on the first try.

RabbitMQ closes a connection that misses two heartbeats. The workers' publishing connections
(retries, the scheduler, the relay, events) and the producer's are idle between publishes;
the first publish after a quiet spell must not be the one that finds the connection dead.
The heartbeat here is one second, so "a quiet spell" is a few seconds of real RabbitMQ time.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import anyio
import dramatiq
import pytest
from dramatiq.middleware import Middleware

from shared.broker import delivery_message
from shared.channels import Channel
from shared.publisher import AmqpPublisher, channel_message
from shared.rabbitmq import CoalescingRabbitmqBroker

pytestmark = pytest.mark.anyio

#: Seconds of silence: over twice the one-second heartbeat, so the broker has given up on a
#: connection that did not answer.
QUIET_SPELL = 4.0


def with_heartbeat(url: str, seconds: int) -> str:
    return f"{url}{'&' if '?' in url else '?'}heartbeat={seconds}"


class CountAttempts(Middleware):
    """Counts the broker's publish attempts per message (a failed one is retried)."""

    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()

    def before_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int) -> None:
        self.attempts[message.message_id] += 1


@pytest.fixture
def broker(broker_url: str) -> Iterator[tuple[CoalescingRabbitmqBroker, CountAttempts]]:
    counter = CountAttempts()
    made = CoalescingRabbitmqBroker(
        url=with_heartbeat(broker_url, 1), confirm_delivery=True, middleware=[counter]
    )
    made.declare_queue(Channel.WEBHOOK.queue_name)
    yield made, counter
    made.close()


def test_a_worker_publisher_idle_past_its_heartbeat_publishes_at_first_try(
    broker: tuple[CoalescingRabbitmqBroker, CountAttempts], queues: Any
) -> None:
    """Given a publishing connection with a one-second heartbeat, when it publishes, stays
    silent for four seconds, and publishes again, then the second publish succeeds on its
    first attempt (no failed publish retried on a new connection)."""
    rabbit, counter = broker
    first = delivery_message(Channel.WEBHOOK, "idle-1")
    rabbit.enqueue(first)
    time.sleep(QUIET_SPELL)

    second = delivery_message(Channel.WEBHOOK, "idle-2")
    rabbit.enqueue(second)

    assert counter.attempts == {"idle-1": 1, "idle-2": 1}
    assert queues.depth(Channel.WEBHOOK.queue_name) == 2


async def test_the_producer_publisher_stays_connected_while_idle(broker_url: str, queues: Any) -> None:
    """Given the producer's asyncio publisher with a one-second heartbeat, when it stays
    silent for four seconds between two publishes, then both use the same connection: the
    loop answered the broker's heartbeats meanwhile."""
    publisher = AmqpPublisher(with_heartbeat(broker_url, 1))
    try:
        await publisher.publish([channel_message(Channel.WEBHOOK, "idle-a")])
        connection = publisher._connection
        await anyio.sleep(QUIET_SPELL)
        await publisher.publish([channel_message(Channel.WEBHOOK, "idle-b")])

        assert publisher._connection is connection and connection is not None
        assert not connection.is_closed
    finally:
        await publisher.close()
    assert queues.depth(Channel.WEBHOOK.queue_name) == 2
