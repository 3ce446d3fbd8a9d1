"""Publishing a burst of broker messages from one thread, their confirms pipelined.

The scheduler hands thousands of ids to RabbitMQ at the moment they are due. Through pika's
blocking channel each publish waits for its own confirm (a round trip per message); through
the asyncio publisher (:mod:`shared.publisher`) every publish costs a dozen event-loop
callbacks, about 0.25 ms of CPU, measured at 4,000 messages/s on a quiet machine against
12,500/s here. This publisher writes the whole burst on the asynchronous side of a pika
channel in confirm mode, a few hundred frames at a time so the broker starts on the first
while the rest are framed, and then waits once, until the broker has confirmed the last of
them (RabbitMQ acknowledges many at a time). Its connection belongs to the thread that uses
it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import dramatiq
import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from pika.spec import Basic

from shared.broker import amqp_url_with_defaults
from shared.errors import EnqueueError
from shared.logging import get_logger

log = get_logger(__name__)

#: Persistent messages, as Dramatiq publishes them.
PERSISTENT = pika.BasicProperties(delivery_mode=2)
#: The longest a burst may wait for its confirms, and how often it looks whether they are in.
CONFIRM_TIMEOUT_S = 10.0
CONFIRM_POLL_S = 0.002
#: How many confirmed messages make a progress report (see ``publish``).
PROGRESS_EVERY = 500
#: How many publishes are framed before what is framed is written to the socket.
WRITE_EVERY = 1000


class PipelinedPublisher:
    def __init__(self, broker_url: str, *, timeout_s: float = CONFIRM_TIMEOUT_S) -> None:
        self.parameters = pika.URLParameters(amqp_url_with_defaults(broker_url))
        self.timeout_s = timeout_s
        self._connection: pika.BlockingConnection | None = None
        self._channel: pika.adapters.blocking_connection.BlockingChannel | None = None
        #: Delivery tags: the last one used; every one up to ``_answered`` the broker has
        #: answered, and these above it (answers may come out of order across queues).
        self._sent = 0
        self._answered = 0
        self._answered_above: set[int] = set()
        #: Publishes the broker refused (nack) or could not route (returned), this burst.
        self._refused = 0

    def publish(
        self, items: Sequence[tuple[str, bytes]], progress: Callable[[int], None] | None = None
    ) -> None:
        """Publish each body to its queue; returns once the broker confirmed all of them,
        else raises :class:`~shared.errors.EnqueueError` (some may have gone out: a message
        published twice is recognised by the worker's claim).

        ``progress(n)``, while the burst is confirmed (every ``PROGRESS_EVERY`` and at the
        end), says that the first ``n`` items are confirmed; it is not called again once the
        broker refused any of them. A long burst's first messages are settled then, not when
        its last is confirmed."""
        if not items:
            return
        try:
            connection, channel = self._open()
            self._refused = 0
            first = self._sent + 1
            for written, (queue, body) in enumerate(items, 1):
                # The asynchronous channel queues the frames without waiting for anything;
                # every few hundred, what is queued goes out, so the broker works on them
                # while the rest are framed.
                channel._impl.basic_publish("", queue, body, PERSISTENT, mandatory=True)
                self._sent += 1
                if written % WRITE_EVERY == 0 or written == len(items):
                    _coalesce(connection)
                    connection.process_data_events(time_limit=0)
            deadline = time.monotonic() + self.timeout_s
            reported = 0
            while self._answered < self._sent:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self._sent - self._answered} confirms missing")
                # The confirms reach our callback directly, which does not end pika's wait,
                # so the wait is kept short: it is the lateness of the last confirm.
                connection.process_data_events(time_limit=min(left, CONFIRM_POLL_S))
                confirmed = self._answered - first + 1
                if progress and not self._refused and confirmed - reported >= PROGRESS_EVERY:
                    reported = confirmed
                    progress(confirmed)
        except (pika.exceptions.AMQPError, OSError, TimeoutError) as exc:
            self.close()
            raise EnqueueError(f"the broker did not accept {len(items)} message(s): {exc!r}") from exc
        if self._refused:
            raise EnqueueError(f"the broker refused {self._refused} of {len(items)} message(s)")
        if progress and reported < len(items):
            progress(len(items))

    def _open(
        self,
    ) -> tuple[pika.BlockingConnection, pika.adapters.blocking_connection.BlockingChannel]:
        if self._connection is not None and self._channel is not None:
            try:
                # Answer what came in while idle (heartbeats; or the broker's close, and then
                # a new connection is opened below).
                self._connection.process_data_events(time_limit=0)
            except (pika.exceptions.AMQPError, OSError):
                self.close()
        if self._connection is None or self._channel is None or not self._channel.is_open:
            self.close()
            connection = pika.BlockingConnection(self.parameters)
            channel = connection.channel()
            channel._impl.add_on_return_callback(self._on_return)
            channel._impl.confirm_delivery(self._on_confirm)
            self._connection, self._channel = connection, channel
            self._sent = self._answered = 0
            self._answered_above.clear()
        return self._connection, self._channel

    def _on_confirm(self, frame: pika.frame.Method[Basic.Ack | Basic.Nack]) -> None:
        method = frame.method
        if isinstance(method, Basic.Nack):
            self._refused += 1  # one, or several with ``multiple``: any is enough to fail
        if method.multiple:
            self._answered = max(self._answered, method.delivery_tag)
            self._answered_above = {t for t in self._answered_above if t > self._answered}
        else:
            self._answered_above.add(method.delivery_tag)
        while self._answered + 1 in self._answered_above:
            self._answered += 1
            self._answered_above.remove(self._answered)

    def _on_return(self, *_: object) -> None:
        self._refused += 1  # no such queue; its confirm follows

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:  # a broken connection: nothing left to close cleanly
                log.debug("pipelined_publisher.close_failed", exc_info=True)


def _coalesce(connection: pika.BlockingConnection) -> None:
    """Join the frames pika holds for the socket into one chunk. It sends a chunk per system
    call, and every call gives the GIL up: in a worker process whose delivery threads keep it
    busy, each takes the switch interval (5 ms) or more to get it back, which made a burst of
    5,000 publishes take seconds beside four busy threads."""
    transport = connection._impl._transport
    buffers = getattr(transport, "_tx_buffers", None)
    if buffers is not None and len(buffers) > 1:
        joined = b"".join(buffers)
        buffers.clear()
        buffers.append(joined)


class QueuePublisher:
    """Dramatiq messages to RabbitMQ through a :class:`PipelinedPublisher`, each queue
    declared as Dramatiq declares it before this process first publishes to it (a publish to
    a queue that does not exist yet would be refused). Belongs to the thread that uses it;
    its connection opens on the first publish."""

    def __init__(self, broker: RabbitmqBroker, broker_url: str) -> None:
        self.broker = broker
        self.broker_url = broker_url
        self._publisher: PipelinedPublisher | None = None
        self._declared: set[str] = set()

    def publish(self, messages: Sequence[dramatiq.Message[Any]]) -> None:
        self.publish_encoded([(m.queue_name, m.encode()) for m in messages])

    def publish_encoded(
        self, items: Sequence[tuple[str, bytes]], progress: Callable[[int], None] | None = None
    ) -> None:
        """See :meth:`PipelinedPublisher.publish`."""
        if not items:
            return
        for queue in {queue for queue, _ in items} - self._declared:
            self.broker.declare_queue(queue, ensure=True)
            self._declared.add(queue)
        if self._publisher is None:
            self._publisher = PipelinedPublisher(self.broker_url)
        self._publisher.publish(items, progress)

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None
