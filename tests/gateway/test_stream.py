"""``GET /api/notifications/stream``: live delivery from the in-app worker's commit to the
user's open streams (through Redis, or in-process on the embedded default), resume with
Last-Event-ID, the per-user stream cap, heartbeats, and isolation between users."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pytest

from producer.gateway.app import create_app
from producer.service import NotificationService
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import utcnow
from tests.conftest import SERVER_KEY, Fleet, final_status
from tests.gateway.inbox import seed, user_headers, user_token
from tests.gateway.server import LiveServer
from tests.gateway.sse import SseClient
from tests.waiting import wait_until


@pytest.fixture
def gateway(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings)) as server:
        yield server


def stream(server: LiveServer, user_id: str, **headers: str) -> SseClient:
    return SseClient(f"{server.url}/api/notifications/stream", headers={**user_headers(user_id), **headers})


def send(service: NotificationService, user_id: str, title: str) -> str:
    return service.send_in_app_notification(user_id=user_id, title=title, message="hello")


def test_a_sent_notification_reaches_the_users_open_streams_only(
    settings: Settings, gateway: LiveServer, fleet: Callable[..., Fleet]
) -> None:
    """Given Alice with two open streams and Bob with one, when a notification is sent to
    Alice, then both her streams get it and her new unread count, and Bob's gets nothing."""
    fleet(settings, [Channel.IN_APP])
    service = NotificationService(settings)
    with stream(gateway, "alice") as tab1, stream(gateway, "alice") as tab2, stream(gateway, "bob") as bob:
        wait_until(lambda: tab1.last_count() == 0 and tab2.last_count() == 0 and bob.last_count() == 0)

        final_status(service, send(service, "alice", "Hello Alice"))

        for tab in (tab1, tab2):
            tab.wait_for_titles("Hello Alice")
            wait_until(lambda tab=tab: tab.last_count() == 1)  # type: ignore[misc]
            (event,) = tab.of("notification")
            assert event.id and event.data["message"] == "hello"
        assert bob.of("notification") == []


def test_mark_as_read_updates_the_count_on_open_streams(settings: Settings, gateway: LiveServer) -> None:
    """Given an open stream and two unread notifications, when one is marked read through the
    API, then the stream receives the new count."""
    ids = seed(settings, "alice", 2)
    with stream(gateway, "alice") as tab:
        wait_until(lambda: tab.last_count() == 2)

        httpx.post(
            f"{gateway.url}/api/notifications/mark-as-read",
            json={"ids": [ids[0]]},
            headers=user_headers("alice"),
        )

        wait_until(lambda: tab.last_count() == 1, message=lambda: f"counts {tab.of('unread-count')}")


def test_a_reconnecting_stream_resumes_after_its_last_event_id(
    settings: Settings, gateway: LiveServer, fleet: Callable[..., Fleet]
) -> None:
    """Given a stream that saw one notification and disconnected, when two more are sent while
    it is away and it reconnects with Last-Event-ID, then it receives exactly the two it
    missed (older ones are not repeated) followed by the current count."""
    fleet(settings, [Channel.IN_APP])
    service = NotificationService(settings)
    # Well before the replay's overlap window: never sent again.
    seed(settings, "alice", 3, prefix="long-ago-", start=utcnow() - timedelta(minutes=10))
    with stream(gateway, "alice") as first:
        final_status(service, send(service, "alice", "one"))
        first.wait_for_titles("one")
        last_id = first.of("notification")[-1].id
    assert last_id is not None

    for title in ("two", "three"):
        final_status(service, send(service, "alice", title))

    with stream(gateway, "alice", **{"Last-Event-ID": last_id}) as again:
        again.wait_for_titles("two", "three")
        wait_until(lambda: again.last_count() == 6)
        assert again.titles() == ["two", "three"]


def test_a_bad_last_event_id_is_refused(gateway: LiveServer) -> None:
    """Given a Last-Event-ID this server never sent, then the stream answers 422."""
    with stream(gateway, "alice", **{"Last-Event-ID": "yesterday"}) as tab:
        assert tab.status == 422


def test_streams_beyond_the_per_user_cap_are_refused(
    make_settings: Callable[..., Settings],
) -> None:
    """Given a cap of two streams per user, when Alice opens a third, then it is refused with
    429 and Retry-After, Bob is unaffected, and once one of hers closes she may open another."""
    settings = make_settings(SSE_MAX_CONNECTIONS_PER_USER="2")
    with LiveServer(create_app(settings)) as server:
        one, two = stream(server, "alice").__enter__(), stream(server, "alice").__enter__()
        try:
            wait_until(lambda: one.last_count() == 0 and two.last_count() == 0)
            response = httpx.get(f"{server.url}/api/notifications/stream", headers=user_headers("alice"))
            assert response.status_code == 429
            assert response.json()["error"]["code"] == "too_many_streams"
            assert response.headers["Retry-After"]
            with stream(server, "bob") as bob:
                assert bob.status == 200

            one.close()

            def reopened() -> bool:
                with stream(server, "alice") as three:
                    return three.status == 200

            wait_until(reopened, message="the closed stream's slot was never released")
        finally:
            one.close()
            two.close()


def test_an_idle_stream_sends_heartbeats(make_settings: Callable[..., Settings]) -> None:
    """Given a short heartbeat interval, when nothing happens, then comment lines keep arriving."""
    settings = make_settings(SSE_HEARTBEAT_INTERVAL="50")
    with LiveServer(create_app(settings)) as server, stream(server, "alice") as tab:
        wait_until(lambda: len(tab.comments) >= 3, message="no heartbeats")
        assert set(tab.comments) == {"ping"}


def test_a_user_token_may_come_in_the_query_but_a_server_key_may_not(gateway: LiveServer) -> None:
    """Given EventSource's lack of headers, then ``access_token`` accepts a user token, and
    refuses a server key or a forged token with 401."""
    url = f"{gateway.url}/api/notifications/stream"
    with SseClient(url, params={"access_token": user_token("alice")}) as ok:
        wait_until(lambda: ok.last_count() == 0)
    with SseClient(url, params={"access_token": SERVER_KEY}) as server_key:
        assert server_key.status == 401
    with SseClient(
        url,
        params={"access_token": user_token("alice", secret="not-the-secret-but-long-enough-for-hs256-keys")},
    ) as forged:
        assert forged.status == 401
    with SseClient(url) as anonymous:
        assert anonymous.status == 401


def test_events_reach_every_gateway_process_through_redis(
    settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given two gateways (each with its own Redis subscription, as two processes would have),
    when a notification is delivered, then Alice's streams on both receive it."""
    fleet(settings, [Channel.IN_APP])
    service = NotificationService(settings)
    with (
        LiveServer(create_app(settings)) as one,
        LiveServer(create_app(settings)) as two,
        stream(one, "alice") as on_one,
        stream(two, "alice") as on_two,
    ):
        wait_until(lambda: on_one.last_count() == 0 and on_two.last_count() == 0)
        final_status(service, send(service, "alice", "everywhere"))
        on_one.wait_for_titles("everywhere")
        on_two.wait_for_titles("everywhere")


def test_without_redis_events_travel_in_process(settings: Settings, fleet: Callable[..., Fleet]) -> None:
    """Given no REDIS_URL (the embedded default: gateway and workers in one process), when a
    notification is delivered, then the open stream still receives it."""
    local = dataclasses.replace(settings, redis_url=None)
    fleet(local, [Channel.IN_APP])
    service = NotificationService(local)
    with LiveServer(create_app(local)) as server, stream(server, "alice") as tab:
        wait_until(lambda: tab.last_count() == 0)
        final_status(service, send(service, "alice", "in-process"))
        tab.wait_for_titles("in-process")


def test_a_redis_outage_does_not_fail_deliveries(settings: Settings, fleet: Callable[..., Fleet]) -> None:
    """Given Redis unreachable, when a notification is sent, then it is still delivered to the
    inbox (the failed publish is only logged) and a stream resuming later receives it."""
    unreachable = dataclasses.replace(settings, redis_url="redis://127.0.0.1:1/0")
    fleet(unreachable, [Channel.IN_APP])
    service = NotificationService(unreachable)

    view = final_status(service, send(service, "alice", "during the outage"))

    assert (view["status"], view["attempts"]) == ("delivered", 1)
    with LiveServer(create_app(settings)) as server, stream(server, "alice") as tab:
        wait_until(lambda: tab.last_count() == 1)
        feed = httpx.get(f"{server.url}/api/notifications", headers=user_headers("alice")).json()
        assert [i["title"] for i in feed["items"]] == ["during the outage"]
