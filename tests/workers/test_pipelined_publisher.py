"""The scheduler's pipelined publisher against the real RabbitMQ: a burst arrives whole and
confirmed, in order and in a few large writes, a queue that does not exist refuses, and a
connection the broker closed while idle is replaced before the next burst."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

import pika
import pytest
from pika.adapters.utils.io_services_utils import _AsyncTransportBase
from pika.spec import Basic

from shared.errors import EnqueueError
from tests.conftest import Queues
from workers.pipelined_publisher import PipelinedPublisher

QUEUE = "pipelined_test"


@pytest.fixture
def publisher(broker_url: str) -> Iterator[PipelinedPublisher]:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    channel.queue_delete(QUEUE)  # the virtual host outlives a test: start empty
    channel.queue_declare(QUEUE, durable=True)
    connection.close()
    p = PipelinedPublisher(broker_url)
    yield p
    p.close()


def connections_of(broker_url: str) -> list[str]:
    """The Erlang process ids of the connections open to the test's virtual host."""
    vhost = unquote(urlsplit(broker_url).path[1:])
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "vhost", "pid"], check=True, capture_output=True, text=True
    ).stdout
    return [line.split("\t", 1)[1] for line in listed.splitlines() if line.split("\t", 1)[0] == vhost]


def test_a_burst_is_on_the_queue_once_publish_returns(publisher: PipelinedPublisher, queues: Queues) -> None:
    publisher.publish([(QUEUE, f"message {n}".encode()) for n in range(2_000)])
    assert queues.depth(QUEUE) == 2_000


def test_a_queue_that_does_not_exist_refuses_the_burst(publisher: PipelinedPublisher) -> None:
    with pytest.raises(EnqueueError, match="refused 1 of 2"):
        publisher.publish([(QUEUE, b"routed"), ("no_such_queue", b"unroutable")])


def test_a_connection_the_broker_closed_while_idle_is_replaced(
    publisher: PipelinedPublisher, broker_url: str, queues: Queues
) -> None:
    """Given a publisher whose connection the broker closed between two bursts (as it does
    after missed heartbeats), then the second burst goes out on a new connection."""
    others = set(connections_of(broker_url))  # what earlier tests left open in the host
    publisher.publish([(QUEUE, b"first")])
    [pid] = set(connections_of(broker_url)) - others
    subprocess.run(["rabbitmqctl", "-q", "close_connection", pid, "test"], check=True, capture_output=True)

    publisher.publish([(QUEUE, b"second")])

    assert queues.depth(QUEUE) == 2
    assert pid not in connections_of(broker_url)


def test_progress_reports_a_prefix_only_once_it_is_on_the_queue(
    publisher: PipelinedPublisher, queues: Queues
) -> None:
    """Given a burst of 2,300 with a progress callback, then each report names a growing
    prefix that the queue already holds, and the last one names the whole burst."""
    reports: list[tuple[int, int]] = []
    publisher.publish(
        [(QUEUE, f"message {n}".encode()) for n in range(2_300)],
        lambda n: reports.append((n, queues.depth(QUEUE))),
    )
    counts = [n for n, _ in reports]
    assert counts == sorted(set(counts)) and counts[-1] == 2_300
    assert all(depth >= n for n, depth in reports)


def test_no_progress_is_reported_once_the_broker_refused(publisher: PipelinedPublisher) -> None:
    reports: list[int] = []
    with pytest.raises(EnqueueError):
        publisher.publish([("no_such_queue", b"unroutable"), (QUEUE, b"routed")], reports.append)
    assert reports == []


def answer(publisher: PipelinedPublisher, tag: int, *, multiple: bool = False) -> None:
    publisher._on_confirm(pika.frame.Method(1, Basic.Ack(delivery_tag=tag, multiple=multiple)))


def test_answers_out_of_order_count_only_the_answered_prefix(broker_url: str) -> None:
    """RabbitMQ may confirm messages routed to different queues out of order: an answer for a
    later tag does not settle the earlier ones still waiting."""
    publisher = PipelinedPublisher(broker_url)
    answer(publisher, 3)
    answer(publisher, 4)
    assert publisher._answered == 0
    answer(publisher, 1)
    assert publisher._answered == 1
    answer(publisher, 2)
    assert publisher._answered == 4
    answer(publisher, 6)
    answer(publisher, 9, multiple=True)  # up to 9, all at once
    assert publisher._answered == 9 and not publisher._answered_above


def queued_bodies(broker_url: str) -> list[bytes]:
    """The bodies on the test queue, in its order, taken off it."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    bodies: list[bytes] = []
    try:
        channel = connection.channel()
        while True:
            method, _, body = channel.basic_get(QUEUE, auto_ack=True)
            if method is None:
                return bodies
            bodies.append(body)
    finally:
        connection.close()


def test_a_burst_goes_to_the_socket_in_a_few_large_writes_in_order(
    publisher: PipelinedPublisher, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a burst of 3,000, then pika's transport sends it in a handful of system calls
    (one per few hundred publishes, not one per publish: each gives the GIL up), and the
    queue holds the messages in the order they were given."""
    sends: list[int] = []
    send = _AsyncTransportBase._sigint_safe_send

    def counted(sock: socket.socket, data: bytes) -> int:
        sends.append(len(data))
        return send(sock, data)

    monkeypatch.setattr(_AsyncTransportBase, "_sigint_safe_send", staticmethod(counted))
    bodies = [f"message {n}".encode() for n in range(3_000)]
    publisher.publish([(QUEUE, body) for body in bodies])

    assert 0 < len(sends) <= 30
    assert queued_bodies(broker_url) == bodies
