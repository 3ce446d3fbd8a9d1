"""Receivers that answer one header byte at a time must not hold up webhooks to anyone else.

A worker process has as many messages in flight as it has slots; each slot waits on its
receiver for at most WEBHOOK_TIMEOUT, whatever the receiver does, so sixteen stalling
receivers take sixteen slots for that long and the rest keep delivering. Real RabbitMQ,
PostgreSQL, the real worker and real sockets on loopback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from producer.service import NotificationService
from shared.channels import Channel
from shared.config import Settings
from tests.conftest import WEBHOOK_SECRET, Fleet
from tests.sinks.drip_server import DripServer
from tests.sinks.webhook_receiver import WebhookReceiver
from tests.waiting import wait_until

SLOW_RECEIVERS = 16
#: Two hundred bytes at 50 ms each: ten seconds of headers, twice the attempt's deadline.
DRIPPED_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Padding: " + b"p" * 150 + b"\r\n\r\n"


def test_healthy_webhooks_pass_sixteen_stalling_receivers(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet]
) -> None:
    """Given sixteen ad-hoc webhooks in flight to receivers dripping their headers, when
    webhooks to a healthy receiver are sent, then they all arrive while the stalled
    requests are still in flight; and each stalled attempt ends as a timeout, its connection
    dropped before the headers were complete."""
    settings = make_settings(WEBHOOK_TIMEOUT="5000", DELIVERY_LEASE="8000")
    service = NotificationService(settings)
    with contextlib.ExitStack() as stack:
        slow = [stack.enter_context(DripServer(DRIPPED_ANSWER, interval=0.05)) for _ in range(SLOW_RECEIVERS)]
        healthy = stack.enter_context(WebhookReceiver(WEBHOOK_SECRET))
        fleet(settings, [Channel.WEBHOOK], threads=SLOW_RECEIVERS + 4)
        stalled = [service.send_webhook(url=peer.url, payload={"n": n}) for n, peer in enumerate(slow)]
        wait_until(
            lambda: all(peer.in_flight() == 1 for peer in slow),
            message="the stalling receivers never all had a request in flight",
        )

        sent = [service.send_webhook(url=healthy.url, payload={"healthy": n}) for n in range(5)]
        healthy.wait_for(len(sent))

        still_stalled = sum(peer.in_flight() for peer in slow)
        assert still_stalled == SLOW_RECEIVERS, "healthy webhooks waited for the stalled ones"

        def timed_out(message_id: str) -> bool:
            return service.get_status(message_id)["errorCode"] == "http_timeout"

        wait_until(lambda: all(timed_out(m) for m in stalled), timeout=30, message="no timeout recorded")
        wait_until(
            lambda: all(peer.connections[0].abandoned for peer in slow),
            message="a stalled connection was kept open",
        )
        assert all(peer.connections[0].sent < len(DRIPPED_ANSWER) for peer in slow)
