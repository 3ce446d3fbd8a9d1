"""The gateway while a dependency is down, over real HTTP on one keep-alive connection: a
database that refuses connections or drops them answers 503 ``database_unavailable`` with
Retry-After in the JSON error shape on every path (the batched insert, a status read on a
thread, the inbox on the asyncio engine), and the connection stays usable for the next
request; a Redis outage costs nothing but the rate limits and live updates.

The shared PostgreSQL is never stopped: the gateway is pointed at a closed loopback port,
or at a proxy the test cuts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
from sqlalchemy.engine import make_url

from producer.gateway.app import create_app
from shared.config import Settings
from tests.conftest import SERVER_KEY
from tests.gateway.inbox import user_headers
from tests.gateway.outage_proxy import TcpProxy
from tests.gateway.server import LiveServer, free_port
from tests.waiting import wait_until

SERVER = {"Authorization": f"Bearer {SERVER_KEY}"}
ACTING_FOR_ALICE = {**SERVER, "X-User-Id": "alice"}
SMS = {"to": "+14155550100", "message": "Your code is 123456"}


def on_port(database_url: str, port: int) -> str:
    return make_url(database_url).set(port=port).render_as_string(hide_password=False)


@contextmanager
def gateway(settings: Settings) -> Iterator[httpx.Client]:
    # One connection at most: every request of a test goes over the same keep-alive socket
    # unless the server closes it.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    hooks = {"response": [_note_local_address]}
    with (
        LiveServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url, timeout=30, limits=limits, event_hooks=hooks) as client,
    ):
        yield client


def _note_local_address(response: httpx.Response) -> None:
    # While the connection is open: it is gone once the client closes.
    response.extensions["local_address"] = response.extensions["network_stream"].get_extra_info("client_addr")


def local_address(response: httpx.Response) -> object:
    """The client side of the TCP connection the response came on."""
    return response.extensions["local_address"]


def the_database_paths(client: httpx.Client) -> list[httpx.Response]:
    """One request down each way the gateway reaches the database."""
    return [
        client.post("/api/messages/sms", json=SMS, headers=SERVER),  # group-committed insert
        client.get("/api/messages/00000000-0000-0000-0000-000000000000", headers=SERVER),  # a thread
        client.get("/api/notifications", headers=ACTING_FOR_ALICE),  # the asyncio engine
        client.post("/api/notifications/mark-all-as-read", headers=user_headers("alice")),
    ]


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "database_unavailable"
    assert set(response.json()["error"]) == {"code", "message", "details"}
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers.get("connection", "").lower() != "close"


def test_a_database_refusing_connections_answers_503_on_a_connection_that_stays_open(
    make_settings: Callable[..., Settings], app_database_url: str
) -> None:
    """Given DATABASE_URL on a closed loopback port, when requests that need the database
    follow each other on one keep-alive connection, then each is answered 503 with
    Retry-After in the JSON error shape, all on that same connection, and /readyz says the
    database is not ready."""
    settings = make_settings(DATABASE_URL=on_port(app_database_url, free_port()))
    with gateway(settings) as client:
        answers = the_database_paths(client)
        ready = client.get("/readyz")

    for response in answers:
        assert_unavailable(response)
    assert {local_address(r) for r in [*answers, ready]} == {local_address(answers[0])}
    assert ready.status_code == 503 and ready.json()["checks"]["database"] != "ok"


def test_a_database_that_drops_its_connections_answers_503_then_recovers(
    make_settings: Callable[..., Settings], app_database_url: str
) -> None:
    """Given the gateway's database behind a proxy and its pools warm, when the proxy cuts
    every connection and refuses new ones (the server died), then every path answers 503
    with Retry-After on the same keep-alive connection; when the proxy is back, sends are
    accepted again without a restart."""
    port = make_url(app_database_url).port or 5432
    with TcpProxy("127.0.0.1", port) as proxy:
        settings = make_settings(DATABASE_URL=on_port(app_database_url, proxy.port))
        with gateway(settings) as client:
            sent = client.post("/api/messages/sms", json=SMS, headers=SERVER)
            warm = [
                client.get(f"/api/messages/{sent.json()['id']}", headers=SERVER),
                client.get("/api/notifications", headers=ACTING_FOR_ALICE),
            ]
            proxy.stop()
            during = the_database_paths(client)
            proxy.start()
            wait_until(
                lambda: client.post("/api/messages/sms", json=SMS, headers=SERVER).status_code == 202,
                timeout=30,
                message="sends were not accepted again once the database was back",
            )
            after = client.get("/api/notifications", headers=ACTING_FOR_ALICE)

    assert sent.status_code == 202 and [r.status_code for r in warm] == [200, 200]
    for response in during:
        assert_unavailable(response)
    assert after.status_code == 200
    assert {local_address(r) for r in [sent, *warm, *during, after]} == {local_address(sent)}


def test_a_redis_outage_leaves_sends_and_the_inbox_working(make_settings: Callable[..., Settings]) -> None:
    """Given REDIS_URL on a closed loopback port, sends, inbox reads and changes (whose live
    updates go through Redis) all succeed on one keep-alive connection, unlimited."""
    settings = make_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    with gateway(settings) as client:
        answers = [
            client.post("/api/messages/sms", json=SMS, headers=SERVER),
            client.post("/api/notifications/test", headers=ACTING_FOR_ALICE),
            client.get("/api/notifications", headers=user_headers("alice")),
            client.post("/api/notifications/mark-all-as-read", headers=user_headers("alice")),
            client.get("/api/notifications/unread-count", headers=ACTING_FOR_ALICE),
        ]

    assert [r.status_code for r in answers] == [202, 202, 200, 200, 200]
    assert not any("ratelimit-limit" in r.headers for r in answers)
    assert {local_address(r) for r in answers} == {local_address(answers[0])}
