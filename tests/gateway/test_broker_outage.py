"""The gateway while RabbitMQ is gone: prompt 503s with Retry-After, nothing half-accepted,
and 202s again as soon as the broker is back.

The choice made: a message is accepted only once RabbitMQ has confirmed it, so during an
outage the gateway refuses (503, ``Retry-After``) rather than answering 202 for messages only
the database holds. Between the two, the client knows to retry; a refused message leaves no
row behind. The outage is a loopback proxy in front of the shared RabbitMQ, cut and restored
(every connection reset, new ones refused), as a killed broker looks to its clients.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from producer.gateway.app import create_app
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import NotificationLog
from shared.db.rls import system_scope
from tests.conftest import SERVER_KEY, Queues
from tests.gateway.outage_proxy import TcpProxy
from tests.gateway.server import LiveServer
from tests.waiting import wait_until

RABBITMQ_PORT = 5672
SMS = {"to": "+14155550100", "message": "Your code is 123456"}
#: Seconds between two requests during the outage.
PACE = 0.25
#: Longer than the publisher's confirm deadline: a request that hangs past it fails the test.
CLIENT_TIMEOUT = 15.0


def rows(settings: Settings) -> int:
    with system_scope(settings.database_url) as session:
        return int(session.scalar(select(func.count()).select_from(NotificationLog)) or 0)


def send(client: httpx.Client) -> httpx.Response:
    return client.post("/api/messages/sms", json=SMS)


@pytest.mark.parametrize("outage_s", [5, 30])
def test_a_broker_outage_is_refused_promptly_and_ends_cleanly(
    outage_s: int, make_settings: Callable[..., Settings], broker_url: str, queues: Queues
) -> None:
    """Given a gateway publishing through a broker that goes away for ``outage_s`` seconds,
    then every request during the outage answers 503 ``broker_unavailable`` with Retry-After
    (none hangs, none answers 202), and after it every request answers 202 again; the rows
    and the queue hold exactly the accepted messages."""
    with TcpProxy("127.0.0.1", RABBITMQ_PORT) as proxy:
        settings = make_settings(BROKER_URL=broker_url.replace(f":{RABBITMQ_PORT}", f":{proxy.port}", 1))
        with (
            LiveServer(create_app(settings)) as server,
            httpx.Client(base_url=server.url, timeout=CLIENT_TIMEOUT) as client,
        ):
            client.headers["Authorization"] = f"Bearer {SERVER_KEY}"
            accepted = [send(client)]
            assert accepted[0].status_code == 202

            proxy.stop()
            refused: list[httpx.Response] = []
            ends = time.monotonic() + outage_s
            while time.monotonic() < ends:
                refused.append(send(client))
                time.sleep(PACE)
            proxy.start()

            answers = {r.status_code for r in refused}
            assert answers == {503}, f"answers during the outage: {answers}"
            for answer in refused:
                body: dict[str, Any] = answer.json()
                assert body["error"]["code"] == "broker_unavailable"
                assert int(answer.headers["Retry-After"]) >= 1

            def back() -> bool:
                answer = send(client)
                if answer.status_code == 202:
                    accepted.append(answer)
                    return True
                assert answer.status_code == 503
                return False

            wait_until(back, timeout=15, message="the gateway did not accept again after the outage")
            accepted += [send(client) for _ in range(5)]
            assert {a.status_code for a in accepted} == {202}

    assert rows(settings) == len(accepted)
    assert queues.depth(Channel.SMS.queue_name) == len(accepted)
