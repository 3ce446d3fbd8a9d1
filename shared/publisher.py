"""Handing message ids to their channel queues from an asyncio loop, confirms pipelined.

The producer's publish used to wait for RabbitMQ's confirm of one message before sending the
next (pika's blocking channel, one round trip each). :class:`AmqpPublisher` keeps one
connection per event loop and sends every publish as soon as it is asked for, each caller
waiting for its own confirm: a hundred concurrent requests cost one round trip's latency,
not a hundred. The connection's heartbeats are answered by the loop itself, so an idle
publisher is never dropped by the broker for missed heartbeats.

What is published is the Dramatiq message the channel's actor consumes (the same body
``dramatiq.Message.encode()`` makes), persistent and ``mandatory``: a message RabbitMQ
cannot route comes back as an error, not silently dropped. A publish that is not confirmed
within ``PUBLISH_TIMEOUT_S`` (the broker is down or blocked) raises
:class:`~shared.errors.EnqueueError` at once, so callers answer 503 instead of hanging.

With the embedded in-process broker (no BROKER_URL) :class:`HandOffPublisher` leaves the ids
to the runner's relay (:mod:`shared.handoff`), the one way into that broker from any process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

import aiormq
import dramatiq
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL
from dramatiq.common import dq_name, xq_name
from pamqp.commands import Basic
from pamqp.common import FieldValue

from shared import handoff
from shared.broker import delivery_message
from shared.channels import Channel
from shared.config import Settings
from shared.errors import EnqueueError
from shared.logging import get_logger

log = get_logger(__name__)

#: The longest a publish waits for the broker's confirm (connect included) before the
#: message counts as not accepted.
PUBLISH_TIMEOUT_S = 5.0


class Publisher(Protocol):
    #: True when :meth:`publish` leaves the ids to the relay, which removes their markers as
    #: it publishes them; False when the caller removes the markers once ``publish`` returned.
    leaves_markers: bool

    async def publish(self, items: Sequence[tuple[str, dramatiq.Message[None]]]) -> None:
        """Publish each ``(queue, message)``; returns once all are confirmed, else raises
        EnqueueError (then some of them may have been published: their rows decide)."""
        ...

    async def close(self) -> None: ...


class AmqpPublisher:
    leaves_markers = False

    def __init__(self, broker_url: str, *, timeout_s: float = PUBLISH_TIMEOUT_S) -> None:
        self.broker_url = broker_url
        self.timeout_s = timeout_s
        self._connection: aiormq.abc.AbstractConnection | None = None
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._declared: set[str] = set()
        self._opening = asyncio.Lock()

    async def publish(self, items: Sequence[tuple[str, dramatiq.Message[None]]]) -> None:
        if not items:
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                channel = await self._open({queue for queue, _ in items})
                confirms = await asyncio.gather(
                    *(
                        channel.basic_publish(
                            message.encode(),
                            routing_key=queue,
                            properties=Basic.Properties(delivery_mode=2),
                            mandatory=True,
                        )
                        for queue, message in items
                    )
                )
        except (TimeoutError, aiormq.exceptions.AMQPError, ConnectionError, OSError) as exc:
            await self._forget()
            raise EnqueueError(f"the broker did not accept {len(items)} message(s): {exc!r}") from exc
        refused = sum(1 for c in confirms if not isinstance(c, Basic.Ack))
        if refused:
            raise EnqueueError(f"the broker refused {refused} of {len(items)} message(s)")

    async def _open(self, queues: set[str]) -> aiormq.abc.AbstractChannel:
        async with self._opening:
            if self._channel is None or self._channel.is_closed:
                await self._forget()
                self._connection = await aiormq.connect(self.broker_url)
                self._channel = await self._connection.channel(publisher_confirms=True)
                self._declared = set()
            for queue in queues - self._declared:
                await self._declare(self._channel, queue)
                self._declared.add(queue)
            return self._channel

    async def _declare(self, channel: aiormq.abc.AbstractChannel, queue: str) -> None:
        """The queue with its delay and dead-letter queues, exactly as Dramatiq declares them
        (a different argument would make RabbitMQ close the channel)."""
        dead_letter: dict[str, FieldValue] = {
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": xq_name(queue),
        }
        expire: dict[str, FieldValue] = {"x-message-ttl": DEAD_MESSAGE_TTL}
        await channel.queue_declare(queue, durable=True, arguments=dead_letter)
        await channel.queue_declare(dq_name(queue), durable=True, arguments=dead_letter)
        await channel.queue_declare(xq_name(queue), durable=True, arguments=expire)

    async def _forget(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and not connection.is_closed:
            try:
                await connection.close()
            except Exception:  # a broken connection: nothing left to close cleanly
                log.debug("publisher.close_failed", exc_info=True)

    async def close(self) -> None:
        await self._forget()


class HandOffPublisher:
    """The embedded default: the broker is in the memory of the runner (``kai-messaging run``),
    this process or another. The ids' relay markers, committed with their rows, are the hand-off:
    the runner's relay publishes them, at once when it runs in this process, within its poll
    interval otherwise, or when it starts."""

    leaves_markers = True

    async def publish(self, items: Sequence[tuple[str, dramatiq.Message[None]]]) -> None:
        if items:
            handoff.nudge()

    async def close(self) -> None:
        pass


def channel_message(channel: Channel, message_id: str) -> tuple[str, dramatiq.Message[None]]:
    return channel.queue_name, delivery_message(channel, message_id)


def build_publisher(settings: Settings) -> Publisher:
    if settings.broker_url is None:
        return HandOffPublisher()
    return AmqpPublisher(settings.broker_url)
