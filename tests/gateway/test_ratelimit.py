"""The gateway's rate limits over real HTTP, on the real Redis, RabbitMQ and PostgreSQL:
429 with the IETF headers once a budget is spent and nothing enqueued for it, separate
budgets per user and per endpoint group, one budget shared by two gateway processes, the
in-process limiter when embedded, and requests let through when Redis is unreachable."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
import redis as redis_lib
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from producer.gateway.app import create_app
from producer.gateway.ratelimit import Group, group_of
from shared.config import Settings
from shared.db.models import NotificationLog
from shared.db.rls import system_scope
from tests.conftest import SERVER_KEY, Queues
from tests.gateway.inbox import user_headers
from tests.gateway.server import GatewayProcess, LiveServer, free_port
from tests.waiting import wait_until

SMS = {"to": "+14155550100", "message": "Your code is 123456"}
IN_APP = {"userId": "u1", "title": "Hello", "message": "World"}
SERVER = {"Authorization": f"Bearer {SERVER_KEY}"}
RATE_HEADERS = {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "ratelimit-policy"}


@contextmanager
def gateway(settings: Settings) -> Iterator[httpx.Client]:
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


@pytest.fixture
def limited(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    """Settings with small budgets, so a test can spend them."""

    def make(**overrides: str) -> Settings:
        budgets = {
            "RATE_LIMIT_SEND": "3/min",
            "RATE_LIMIT_EVENTS": "3/min",
            "RATE_LIMIT_READ": "4/min",
            "RATE_LIMIT_MANAGE": "3/min",
        }
        return make_settings(**{**budgets, **overrides})

    return make


def rows(settings: Settings) -> int:
    with system_scope(settings.database_url) as session:
        return int(session.scalar(select(func.count()).select_from(NotificationLog)) or 0)


def send_sms(client: httpx.Client, **headers: str) -> httpx.Response:
    return client.post("/api/messages/sms", json=SMS, headers={**SERVER, **headers})


def send_test(client: httpx.Client, headers: dict[str, str]) -> httpx.Response:
    return client.post("/api/notifications/test", headers=headers)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("method", "path", "group"),
    [
        ("POST", "/api/messages/email", Group.SEND),
        ("POST", "/api/messages/in-app", Group.SEND),
        ("POST", "/api/notifications/test", Group.SEND),
        ("POST", "/api/events", Group.EVENTS),
        ("GET", "/api/events/e1", Group.READ),
        ("GET", "/api/messages/m1", Group.READ),
        ("GET", "/api/notifications", Group.READ),
        ("GET", "/api/notifications/unread-count", Group.READ),
        ("GET", "/api/notifications/stream", Group.READ),
        ("POST", "/api/notifications/mark-as-read", Group.READ),
        ("POST", "/api/notifications/seen", Group.READ),
        ("POST", "/api/notifications/clicked", Group.READ),
        ("PUT", "/api/notifications/preferences", Group.MANAGE),
        ("GET", "/api/notifications/preferences", Group.MANAGE),
        ("POST", "/api/templates", Group.MANAGE),
        ("PUT", "/api/rules/r1", Group.MANAGE),
        ("POST", "/api/webhooks/configurations", Group.MANAGE),
        ("PUT", "/api/users/u1/contacts", Group.MANAGE),
    ],
)
def test_every_endpoint_belongs_to_its_group(method: str, path: str, group: Group) -> None:
    assert group_of(method, path) is group


def test_over_the_limit_answers_429_with_headers_and_enqueues_nothing(
    limited: Callable[..., Settings], queues: Queues
) -> None:
    """Given a send budget of 3 a minute, the first three SMS are accepted with the remaining
    budget counting down; the fourth and fifth get 429 in the JSON error shape with
    Retry-After and RateLimit-*, and only three messages reach the queue and the table."""
    settings = limited()
    with gateway(settings) as client:
        accepted = [send_sms(client) for _ in range(3)]
        refused = [send_sms(client) for _ in range(2)]

    assert [r.status_code for r in accepted] == [202, 202, 202]
    assert [r.headers["RateLimit-Remaining"] for r in accepted] == ["2", "1", "0"]
    assert all(r.headers["RateLimit-Limit"] == "3" for r in accepted)
    assert all(0 < int(r.headers["RateLimit-Reset"]) <= 60 for r in accepted)
    assert accepted[0].headers["RateLimit-Policy"] == "3;w=60"
    for response in refused:
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "rate_limited"
        assert set(response.json()["error"]) == {"code", "message", "details"}
        assert 0 < int(response.headers["Retry-After"]) <= 60
        assert response.headers["RateLimit-Remaining"] == "0"
        assert response.headers["RateLimit-Reset"] == response.headers["Retry-After"]
        # The headers are not repeated by the middleware that adds them to other answers.
        assert response.headers.get_list("RateLimit-Limit") == ["3"]
    assert rows(settings) == 3
    wait_until(lambda: queues.depth("sms") == 3, message=lambda: f"sms queue holds {queues.depth('sms')}")
    assert metric("kai_gateway_rate_limited_total", group="send") >= 2


def test_users_of_one_server_key_have_separate_budgets(limited: Callable[..., Settings]) -> None:
    """Given a server key acting for alice with X-User-Id, when alice's send budget is spent
    (test notifications), then her fourth is refused on her own budget, while her own user
    token (a credential of its own) still has its whole budget."""
    with gateway(limited(RATE_LIMIT_SEND="5/min")) as client:
        alice = [send_test(client, {**SERVER, "X-User-Id": "alice"}) for _ in range(6)]
        bob = send_test(client, {**SERVER, "X-User-Id": "bob"})
        alice_token = send_test(client, user_headers("alice"))

    assert [r.status_code for r in alice] == [202] * 5 + [429]
    assert bob.status_code == 429  # the key's own ceiling is spent too (see below)
    assert alice_token.status_code == 202 and alice_token.headers["RateLimit-Remaining"] == "4"


#: Every endpoint that acts for a user named by X-User-Id, with its group's budget in
#: ``limited`` settings (send 3, read 4, manage 3).
USER_ACTING = [
    ("POST", "/api/notifications/test", 3),
    ("GET", "/api/notifications", 4),
    ("GET", "/api/notifications/unread-count", 4),
    ("POST", "/api/notifications/mark-all-as-read", 4),
    ("POST", "/api/notifications/mark-as-read", 4),
    ("POST", "/api/notifications/seen", 4),
    ("POST", "/api/notifications/clicked", 4),
    ("POST", "/api/notifications/delete", 4),
    ("GET", "/api/notifications/preferences", 3),
    ("PUT", "/api/notifications/preferences", 3),
]


@pytest.mark.parametrize(("method", "path", "budget"), USER_ACTING)
def test_a_server_key_cannot_escape_its_budget_by_inventing_users(
    limited: Callable[..., Settings], method: str, path: str, budget: int
) -> None:
    """Given a server key, when it acts for a fresh X-User-Id on every call of an endpoint
    that acts for users, then the key's own budget of the endpoint's group is charged too:
    past it every call is 429 with Retry-After in the JSON error shape, and no test
    notification beyond the budget is enqueued."""
    settings = limited()
    body = {"ids": []} if path.endswith(("mark-as-read", "seen", "clicked", "delete")) else {}
    if method == "PUT":
        body = {"emailEnabled": True}
    with gateway(settings) as client:
        answers = [
            client.request(method, path, json=body or None, headers={**SERVER, "X-User-Id": f"invented-{n}"})
            for n in range(budget + 4)
        ]

    statuses = [r.status_code for r in answers]
    assert all(s < 300 for s in statuses[:budget]), statuses
    assert statuses[budget:] == [429] * 4
    refused = answers[-1]
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) > 0
    assert refused.headers["RateLimit-Remaining"] == "0"
    if path.endswith("/test"):
        assert rows(settings) == budget


def test_a_key_whose_send_budget_is_spent_cannot_send_test_notifications_for_new_users(
    limited: Callable[..., Settings],
) -> None:
    """Given a server key that spent its send budget on SMS, then test notifications for
    users it never named before are refused too, and nothing more is enqueued."""
    settings = limited()
    with gateway(settings) as client:
        sends = [send_sms(client) for _ in range(3)]
        tests = [send_test(client, {**SERVER, "X-User-Id": f"fresh-{n}"}) for n in range(5)]

    assert [r.status_code for r in sends] == [202] * 3
    assert [r.status_code for r in tests] == [429] * 5
    assert rows(settings) == 3


def test_a_user_token_keeps_its_own_budget_beside_the_server_keys(limited: Callable[..., Settings]) -> None:
    """A user's own token is not charged to any server key: after the key's read budget is
    spent acting for many users, a user token still reads."""
    with gateway(limited()) as client:
        for n in range(5):
            client.get("/api/notifications/unread-count", headers={**SERVER, "X-User-Id": f"u{n}"})
        own = client.get("/api/notifications/unread-count", headers=user_headers("u0"))

    assert own.status_code == 200 and own.headers["RateLimit-Remaining"] == "3"


def test_x_user_id_does_not_split_a_server_endpoints_budget(limited: Callable[..., Settings]) -> None:
    """Sends act for the key, so a caller naming a new user on each one still has one budget
    (otherwise any key could escape its limit by inventing users)."""
    with gateway(limited()) as client:
        answers = [send_sms(client, **{"X-User-Id": f"user-{n}"}) for n in range(4)]

    assert [r.status_code for r in answers] == [202, 202, 202, 429]


def test_user_tokens_are_limited_per_user(limited: Callable[..., Settings]) -> None:
    """Given a read budget of 4, carol's fifth feed read is refused while dave reads on."""
    with gateway(limited()) as client:
        carol = [client.get("/api/notifications", headers=user_headers("carol")) for _ in range(5)]
        dave = client.get("/api/notifications/unread-count", headers=user_headers("dave"))

    assert [r.status_code for r in carol] == [200, 200, 200, 200, 429]
    assert dave.status_code == 200 and dave.headers["RateLimit-Remaining"] == "3"


def test_a_spent_group_leaves_the_other_groups_alone(limited: Callable[..., Settings]) -> None:
    """Given the send budget spent, reading a status, posting an event and managing
    templates still work, each against its own budget."""
    with gateway(limited()) as client:
        first = send_sms(client)
        for _ in range(3):
            send_sms(client)
        assert send_sms(client).status_code == 429

        status = client.get(f"/api/messages/{first.json()['id']}", headers=SERVER)
        event_body = {"eventType": "order.created", "userId": "u1"}
        event = client.post("/api/events", json=event_body, headers=SERVER)
        templates = client.get("/api/templates", headers=SERVER)

    assert status.status_code == 200 and status.headers["RateLimit-Limit"] == "4"
    assert event.status_code == 202 and event.headers["RateLimit-Remaining"] == "2"
    assert templates.status_code == 200 and templates.headers["RateLimit-Remaining"] == "2"


def test_refused_input_is_charged_and_says_so(limited: Callable[..., Settings]) -> None:
    """A request refused for its body (422) was still a request: it carries the headers and
    counts against the budget."""
    with gateway(limited()) as client:
        bad = client.post("/api/messages/sms", json={"to": "not a number"}, headers=SERVER)
        good = send_sms(client)

    assert bad.status_code == 422 and bad.headers["RateLimit-Remaining"] == "2"
    assert good.headers["RateLimit-Remaining"] == "1"


def test_the_key_itself_never_reaches_redis(limited: Callable[..., Settings], redis_url: str) -> None:
    """Budgets in Redis are named by a fingerprint of the key and a hash of the user."""
    with gateway(limited()) as client:
        client.get("/api/notifications/unread-count", headers={**SERVER, "X-User-Id": "erin@example.com"})

    client_ = redis_lib.Redis.from_url(redis_url)
    keys = [k.decode() for k in client_.keys("kai:rl:gw:*")]
    client_.close()
    # The user's budget under the key, and the key's own.
    assert len(keys) == 2 and all(k.startswith("kai:rl:gw:read:k:") for k in keys)
    assert sum(":u:" in k for k in keys) == 1
    assert not any(SERVER_KEY in k or "erin" in k for k in keys)


def test_limits_can_be_switched_off(limited: Callable[..., Settings]) -> None:
    """RATE_LIMIT_ENABLED=false: no budget, no headers."""
    with gateway(limited(RATE_LIMIT_ENABLED="false")) as client:
        answers = [send_sms(client) for _ in range(5)]

    assert [r.status_code for r in answers] == [202] * 5
    assert not RATE_HEADERS & set(answers[-1].headers)


def test_the_embedded_limiter_works_in_process(limited: Callable[..., Settings], redis_url: str) -> None:
    """Without REDIS_URL (the embedded default) the budget is kept in the gateway process:
    the same 429 after three, and nothing written to Redis."""
    with gateway(limited(REDIS_URL="")) as client:
        answers = [send_sms(client) for _ in range(4)]

    assert [r.status_code for r in answers] == [202, 202, 202, 429]
    assert answers[-1].headers["Retry-After"]
    client_ = redis_lib.Redis.from_url(redis_url)
    assert client_.keys("kai:rl:*") == []
    client_.close()


def test_an_unreachable_redis_lets_requests_through(
    limited: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    """Given REDIS_URL on a closed loopback port, requests over the budget are still
    accepted (delivery matters more than limiting), without RateLimit headers; a warning is
    logged and kai_rate_limit_unavailable_total counts every unchecked request."""
    settings = limited(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    before = metric("kai_rate_limit_unavailable_total", component="gateway")
    with gateway(settings) as client:
        answers = [send_sms(client) for _ in range(5)]

    assert [r.status_code for r in answers] == [202] * 5
    assert not RATE_HEADERS & set(answers[0].headers)
    assert rows(settings) == 5
    assert metric("kai_rate_limit_unavailable_total", component="gateway") - before == 5
    assert any("ratelimit.unavailable" in r.getMessage() for r in caplog.records)


def test_two_gateway_processes_share_one_budget(base_env: dict[str, str], settings: Settings) -> None:
    """Given two `kai-messaging gateway` processes on one Redis with a send budget of 10,
    when 24 requests alternate between them, exactly 10 are accepted in all, and each
    process refuses some (it sees what the other spent)."""
    env = {**base_env, "RATE_LIMIT_SEND": "10/min"}
    answers: list[tuple[int, int]] = []
    with GatewayProcess(env) as first, GatewayProcess(env) as second:
        clients = [httpx.Client(base_url=g.url, timeout=10, headers=SERVER) for g in (first, second)]
        try:
            for n in range(24):
                response = clients[n % 2].post("/api/messages/in-app", json=IN_APP)
                answers.append((n % 2, response.status_code))
        finally:
            for c in clients:
                c.close()

    statuses = [status for _, status in answers]
    assert statuses.count(202) == 10 and statuses.count(429) == 14
    assert {process for process, status in answers if status == 429} == {0, 1}
    assert {process for process, status in answers if status == 202} == {0, 1}
    assert rows(settings) == 10
