"""Dramatiq's RabbitMQ broker with acknowledgements written in batches.

Dramatiq's consumer acknowledges each message through ``BlockingChannel.basic_ack``, which
flushes the connection's output and waits for the socket before returning: one I/O-loop
pass per acknowledgement on the single consumer thread. Profiled on a worker draining a full
queue with an empty actor, that was about 60% of the process's CPU and capped it near 3,400
messages/s. Here worker threads hand their delivery tags to the consumer thread, which
writes every pending acknowledgement in one pass (the frames go out on the consumer's next
I/O pass, within its ``worker_timeout``). What is acknowledged, and when a message counts as
done, does not change: a tag is only ever queued after its actor returned.

The consumer thread also releases delayed messages (retries, ``delay=``) whose time has come,
but only between two messages or when its idle wait ends; Dramatiq's idle wait is a second,
so a retry on a quiet queue left up to a second late (p99 952 ms in the retry benchmark).
The wait is capped at :data:`IDLE_WAIT_MS` here; an idle consumer then wakes 20 times a
second, a few microseconds of CPU each.

Publishing goes through a connection per thread that only does I/O while it publishes, so it
does not answer the broker's heartbeats while idle: after two missed heartbeats RabbitMQ
closes it, and the next publish used to fail and be retried on a new connection (a warning
and a second round trip paid by whoever published). Before each publish the connection now
answers what has arrived meanwhile (heartbeats, or the broker's close, and then it is
replaced before use).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import pika
from dramatiq.broker import MessageProxy
from dramatiq.brokers.rabbitmq import RabbitmqBroker, _RabbitmqConsumer
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message


class CoalescingConsumer(_RabbitmqConsumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._pending: deque[tuple[int, bool]] = deque()
        self._lock = threading.Lock()
        self._flush_scheduled = False

    def ack(self, message: MessageProxy) -> None:
        try:
            self.known_tags.remove(message._tag)
        except KeyError:
            self.logger.warning("Failed to ack message: not in known tags.")
            return
        self._queue(message._tag, ack=True)

    def _nack(self, tag: int) -> None:
        # The base class's nack() has already forgotten the tag.
        self._queue(tag, ack=False)

    def _queue(self, tag: int, *, ack: bool) -> None:
        self._pending.append((tag, ack))
        with self._lock:
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
        try:
            # Wakes the consumer thread once for however many tags arrive before it runs.
            self.connection.add_callback_threadsafe(self._flush)
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as exc:
            # The connection is gone: RabbitMQ redelivers every unacknowledged message.
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]

    def _flush(self) -> None:
        """On the consumer thread: put every pending acknowledgement on the wire."""
        with self._lock:
            self._flush_scheduled = False
        channel = self.channel._impl  # pika's asynchronous channel: no flush per frame
        while self._pending:
            tag, ack = self._pending.popleft()
            if ack:
                channel.basic_ack(tag)
            else:
                channel.basic_nack(tag, requeue=False)


#: How long a consumer waits for a message before it looks at its delayed ones again.
IDLE_WAIT_MS = 50


class CoalescingRabbitmqBroker(RabbitmqBroker):
    @property
    def consumer_class(self) -> type[CoalescingConsumer]:
        return CoalescingConsumer

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> CoalescingConsumer:
        consumer = super().consume(queue_name, prefetch, min(timeout, IDLE_WAIT_MS))
        assert isinstance(consumer, CoalescingConsumer)
        return consumer

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        self._answer_while_idle()
        return super().enqueue(message, delay=delay)

    def _answer_while_idle(self) -> None:
        """Service this thread's publishing connection (a poll, no waiting); if the broker has
        closed it meanwhile, drop it so the publish opens a fresh one."""
        connection = getattr(self.state, "connection", None)
        if connection is None:
            return
        try:
            connection.process_data_events(time_limit=0)
        except (pika.exceptions.AMQPError, OSError):
            del self.connection
