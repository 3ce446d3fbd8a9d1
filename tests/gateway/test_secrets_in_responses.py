"""Secrets in what the gateway answers and logs: refusals never echo the credential they
refused, an internal error answers without its cause, a webhook endpoint's secret appears
only in the create and regenerate answers, and the gateway's own log lines (captured as
the JSON it writes) hold none of these values, nor the path of a webhook URL."""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest

from producer.gateway.app import create_app
from producer.service import NotificationService
from shared.channels import Channel
from shared.config import Settings
from shared.logging import configure_logging, secret_values
from shared.templates import store
from tests.conftest import SERVER_KEY, USER_TOKEN_SECRET, Fleet, final_status
from tests.gateway.server import LiveServer, free_port
from tests.sinks.twilio_sink import TwilioSink
from tests.sinks.webhook_receiver import WebhookReceiver
from tests.webhook_events import emit

BASE = "/api/webhooks/configurations"
SERVER = {"Authorization": f"Bearer {SERVER_KEY}"}


@pytest.fixture
def gateway_log(settings: Settings) -> Iterator[Callable[[], str]]:
    """The gateway's log configured as in production (INFO, its secrets known), written to
    a buffer instead of stderr; the session's logging comes back afterwards."""
    yield from _process_log(settings, "INFO")


@pytest.fixture
def debug_log(settings: Settings) -> Iterator[Callable[[], str]]:
    """This process's log (gateway and workers alike) at its most talkative level."""
    yield from _process_log(settings, "DEBUG")


def _process_log(settings: Settings, level: str) -> Iterator[Callable[[], str]]:
    buffer = io.StringIO()
    real_stderr = sys.stderr
    sys.stderr = buffer
    try:
        configure_logging(level, secret_values(settings))
    finally:
        sys.stderr = real_stderr
    yield buffer.getvalue
    configure_logging("WARNING")


@pytest.fixture
def client(settings: Settings, gateway_log: Callable[[], str]) -> Iterator[httpx.Client]:
    with LiveServer(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def user_token(**claims: Any) -> str:
    return jwt.encode({"sub": "ann", "exp": int(time.time()) + 300, **claims}, USER_TOKEN_SECRET, "HS256")


def test_refusals_never_echo_the_credential(client: httpx.Client, gateway_log: Callable[[], str]) -> None:
    """Given a wrong server key, an expired or foreign user token, a user token where a
    server key is needed, and URLs carrying passwords, when each is refused, then neither
    the answer nor the gateway's log holds the credential."""
    wrong_key = "not-the-key-5f0e1d2c3b4a"
    expired = jwt.encode({"sub": "ann", "exp": 1}, USER_TOKEN_SECRET, "HS256")
    foreign = jwt.encode(
        {"sub": "ann", "exp": int(time.time()) + 300}, "another-secret-32-bytes-long!!!!", "HS256"
    )
    valid_user = user_token()
    url_password = "url-pw-8c7b6a59"
    refusals = [
        client.get("/api/templates", headers={"Authorization": f"Bearer {wrong_key}"}),
        client.get("/api/notifications", headers={"Authorization": f"Bearer {expired}"}),
        client.get("/api/notifications", headers={"Authorization": f"Bearer {foreign}"}),
        client.get("/api/notifications/stream", params={"access_token": foreign}),
        client.get("/api/templates", headers={"Authorization": f"Bearer {valid_user}"}),
        client.post(
            "/api/messages/webhook",
            headers=SERVER,
            json={"url": f"https://partner:{url_password}@example.com/hook", "payload": {}},
        ),
        client.post(BASE, headers=SERVER, json={"url": f"https://partner:{url_password}@example.com/"}),
    ]

    assert [r.status_code for r in refusals] == [401, 401, 401, 401, 403, 422, 422]
    answers = "\n".join(r.text for r in refusals)
    for credential in (wrong_key, expired, foreign, valid_user, url_password, SERVER_KEY, USER_TOKEN_SECRET):
        assert credential not in answers
        assert credential not in gateway_log()


def test_an_internal_error_answers_without_its_cause(
    client: httpx.Client, gateway_log: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given the database failing with an error that names its URL and password, when a
    request meets it, then the answer is a bare 500 and the logged traceback is redacted."""
    password = "pg-password-4e3d2c1b"

    def failing(*_: Any, **__: Any) -> Any:
        raise ConnectionError(f"could not connect to postgresql://kai:{password}@db.internal/kai")

    monkeypatch.setattr(store, "list_current_page", failing)

    response = client.get("/api/templates", headers=SERVER)

    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal_error", "message": "internal error", "details": []}
    }
    lines = [json.loads(line) for line in gateway_log().splitlines() if line.startswith("{")]
    logged = next(line for line in lines if line["event"] == "gateway.unexpected_error")
    assert "postgresql://kai:[redacted]@db.internal/kai" in logged["exception"]
    assert password not in gateway_log()


def test_a_webhook_secret_is_shown_on_create_and_regenerate_only(
    client: httpx.Client, gateway_log: Callable[[], str]
) -> None:
    """Given an endpoint created and its secret regenerated, then its read, the list and its
    delivery log never hold either secret, and neither does the gateway's log."""
    with WebhookReceiver() as receiver:
        created = client.post(BASE, headers=SERVER, json={"url": receiver.url}).json()
        endpoint = f"{BASE}/{created['id']}"
        regenerated = client.post(f"{endpoint}/regenerate-secret", headers=SERVER).json()
        reads = [
            client.get(endpoint, headers=SERVER),
            client.get(BASE, headers=SERVER),
            client.get(f"{endpoint}/logs", headers=SERVER),
            client.patch(endpoint, headers=SERVER, json={"description": "renamed"}),
        ]

    assert created["secret"].startswith("whsec_") and regenerated["secret"].startswith("whsec_")
    assert [r.status_code for r in reads] == [200, 200, 200, 200]
    for secret in (created["secret"], regenerated["secret"]):
        assert all(secret not in r.text for r in reads)
        assert secret not in gateway_log()


def test_a_webhook_urls_path_never_reaches_the_log(
    settings: Settings, fleet: Callable[..., Fleet], debug_log: Callable[[], str]
) -> None:
    """Given an endpoint whose URL carries its credential in the path (as chat incoming
    webhooks do), when events are delivered to it, it is sent a test event, one attempt
    fails and another cannot connect, then no log line at any level holds that path:
    libraries log nothing below warning, and what they do log has URLs cut to the host."""
    path_secret = "T0KAI/B0KAI/" + "x9" * 12
    with (
        WebhookReceiver() as receiver,
        LiveServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url, headers=SERVER, timeout=30) as client,
    ):
        created = client.post(BASE, json={"url": f"{receiver.url}/services/{path_secret}"}).json()
        receiver.set_secret(created["secret"])
        closed = client.post(BASE, json={"url": f"http://127.0.0.1:{free_port()}/services/{path_secret}"})
        fleet(settings, [Channel.WEBHOOK])
        delivered = emit(settings, "order.created", {"n": 1})
        receiver.wait_for(1)
        receiver.respond_next(500, body=b"nope")
        tested = client.post(f"{BASE}/{created['id']}/test")
        service = NotificationService(settings)
        outcomes = [final_status(service, message_id)["status"] for message_id in delivered]

    assert closed.status_code == 201 and tested.status_code == 200
    assert sorted(outcomes) == ["delivered", "failed"]  # the closed port, after its retries
    assert receiver.deliveries and all(d.path.endswith(path_secret) for d in receiver.deliveries)
    assert debug_log(), "nothing was logged at all"
    assert path_secret not in debug_log()
    assert "x9x9x9" not in debug_log()


def test_an_sms_delivery_leaves_no_trace_of_the_twilio_request(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet], gateway_log: Callable[[], str]
) -> None:
    """Given logging at INFO as in production, when an SMS is delivered through the Twilio
    SDK, then the SDK's narration of the request (its URL with the account, its headers) is
    not in the log: libraries log only their warnings."""
    account = "AC" + "7e" * 16
    with TwilioSink(account, "sms-token-5d4c3b2a") as sink:
        settings = make_settings(
            TWILIO_ACCOUNT_SID=account,
            TWILIO_AUTH_TOKEN="sms-token-5d4c3b2a",
            TWILIO_PHONE_NUMBER="+15005550006",
            TWILIO_API_BASE=sink.base_url,
        )
        fleet(settings, [Channel.SMS])
        service = NotificationService(settings)
        message_id = service.send_sms(to="+14155550100", message="Your code is 123456")
        assert final_status(service, message_id)["status"] in {"sent", "delivered"}

    assert "delivery.sent" in gateway_log()
    assert account not in gateway_log() and "Messages.json" not in gateway_log()
