"""One-click unsubscribe (RFC 8058), end to end: emails go through the real RabbitMQ and the
email actor to the SMTP sink carrying List-Unsubscribe and List-Unsubscribe-Post; the link
is then used against the real gateway as a mailbox provider (a POST) or a person (the page,
then its button) would. Forged, altered and expired links change nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import jwt
import pytest

from producer.events import EventNotificationService
from producer.gateway.app import create_app
from producer.service import NotificationService
from shared import unsubscribe
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import utcnow
from shared.db.rls import user_scope
from shared.errors import ConfigError
from shared.preferences import load
from tests.conftest import Fleet, final_status
from tests.gateway.server import LiveServer, free_port
from tests.sinks.smtp_sink import SmtpSink
from tests.sinks.webhook_receiver import WebhookReceiver
from tests.test_events_flow import add_rule, save_template
from tests.webhook_events import create_endpoint

SECRET = "unsubscribe-test-secret-of-32-bytes-at-least"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@dataclass
class World:
    settings: Settings
    service: NotificationService
    smtp: SmtpSink
    gateway: str

    def email(self, user_id: str | None = "ann", **fields: object) -> tuple[str, str | None]:
        """Send an email and wait for it at the sink: its id and its List-Unsubscribe URL."""
        before = len(self.smtp.received)
        extra = {"user_id": user_id} if user_id else {}
        message_id = self.service.send_email(
            to="ann@example.com", subject="Hi", text="Hello", **extra, **fields
        )
        assert final_status(self.service, message_id)["status"] == "sent"
        mail = self.smtp.wait_for(before + 1)[before]
        header = mail["List-Unsubscribe"]
        if header is None:
            return message_id, None
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        found = re.fullmatch(r"<(\S+)>", str(header))
        assert found is not None, header
        return message_id, found.group(1)


@pytest.fixture
def world(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet], smtp: SmtpSink
) -> Iterator[World]:
    port = free_port()
    settings = make_settings(
        EMAIL_HOST=smtp.host,
        EMAIL_PORT=str(smtp.port),
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        UNSUBSCRIBE_SECRET=SECRET,
    )
    fleet(settings, [Channel.EMAIL, Channel.WEBHOOK], events=True)
    with LiveServer(create_app(settings), port=port) as server:
        yield World(settings, NotificationService(settings), smtp, server.url)


def email_on(world: World, user_id: str) -> bool:
    with user_scope(world.settings.database_url, user_id) as session:
        return load(session, user_id).channels[Channel.EMAIL]


def test_the_one_click_post_turns_the_users_email_off(world: World) -> None:
    """Given an email sent to Ann directly, when her mailbox provider posts the one-click
    body to its List-Unsubscribe URL, then her email switch is off, her next email is
    skipped for it, and the first one shows an ``unsubscribed`` receipt."""
    message_id, url = world.email()
    assert url is not None and url.startswith(f"{world.gateway}/unsubscribe/")

    answer = httpx.post(url, data=ONE_CLICK)

    assert answer.status_code == 200 and "no longer receive" in answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert not email_on(world, "ann")
    receipts = world.service.get_status(message_id)["receipts"]
    assert [(r["type"], r["provider"]) for r in receipts] == [("unsubscribed", "list-unsubscribe")]
    later = world.service.send_email(to="ann@example.com", subject="Again", text="Hello", user_id="ann")
    skipped = final_status(world.service, later)
    assert (skipped["status"], skipped["errorCode"]) == ("skipped", "preference_opt_out")


def test_an_unsubscribe_reaches_endpoints_subscribed_to_it(world: World) -> None:
    """The receipt is written in Ann's own transaction; its webhook event still goes out."""
    with WebhookReceiver("whsec_" + "E" * 40) as hooks:
        create_endpoint(world.settings, hooks.url, eventTypes=["message.unsubscribed"])
        message_id, url = world.email()
        assert url is not None

        assert httpx.post(url, data=ONE_CLICK).status_code == 200

        [delivery] = hooks.wait_for(1, timeout=20)
        body = json.loads(delivery.body)
        assert (body["type"], body["data"]["messageId"], body["data"]["userId"]) == (
            "message.unsubscribed",
            message_id,
            "ann",
        )


def test_the_link_opened_in_a_browser_asks_first_and_changes_nothing(world: World) -> None:
    """A GET (a person, or a mail scanner opening every link) shows a page whose button posts
    to the same URL; only that post unsubscribes."""
    _, url = world.email()
    assert url is not None

    page = httpx.get(url)

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<form method="post"><button type="submit">Unsubscribe</button></form>' in page.text
    assert "all emails that are not critical" in page.text
    assert email_on(world, "ann")
    assert httpx.post(url).status_code == 200  # the button posts an empty form
    assert not email_on(world, "ann")


def test_an_email_for_an_event_type_turns_off_only_that_type(world: World) -> None:
    save_template(world.settings, key="shipped", channel="email", subject="Shipped", text="On its way")
    add_rule(world.settings, eventType="order.shipped", channels=["email"], templateKey="shipped")
    events = EventNotificationService(world.settings)
    events.process_event("order.shipped", user_id="bea", data={"email": "bea@example.com"})
    [mail] = world.smtp.wait_for(1)
    found = re.fullmatch(r"<(\S+)>", str(mail["List-Unsubscribe"]))
    assert found is not None

    assert httpx.post(found.group(1), data=ONE_CLICK).status_code == 200

    with user_scope(world.settings.database_url, "bea") as session:
        prefs = load(session, "bea")
    assert prefs.events == {"order.shipped": {"email": False}}
    assert prefs.channels[Channel.EMAIL]  # everything else still comes


def test_using_the_link_twice_records_it_once(world: World) -> None:
    message_id, url = world.email()
    assert url is not None
    assert [httpx.post(url, data=ONE_CLICK).status_code for _ in range(3)] == [200, 200, 200]
    assert len(world.service.get_status(message_id)["receipts"]) == 1


def forged(world: World, message_id: str, *, secret: str = SECRET, days_old: int = 0) -> str:
    issued = utcnow() - timedelta(days=days_old)
    claims = {
        "sub": message_id,
        "aud": unsubscribe.AUDIENCE,
        "iat": int(issued.timestamp()),
        "exp": int((issued + timedelta(days=world.settings.unsubscribe_link_days)).timestamp()),
    }
    return f"{world.gateway}/unsubscribe/{jwt.encode(claims, secret, algorithm='HS256')}"


def test_forged_altered_and_expired_links_change_nothing(world: World) -> None:
    """A link signed with another secret, Ann's link with Bob's message put in it, and a link
    older than UNSUBSCRIBE_LINK_DAYS are refused; neither Ann's nor Bob's email goes off."""
    ann_message, ann_url = world.email("ann")
    bob_message, _ = world.email("bob")
    assert ann_url is not None
    header, _, signature = ann_url.rsplit("/", 1)[1].split(".")
    claims = {"sub": bob_message, "aud": unsubscribe.AUDIENCE, "exp": 4102444800}
    swapped = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()

    attempts = {
        "another secret": forged(world, ann_message, secret="not-ours-but-just-as-long-as-ours-is"),
        "Bob's message in Ann's link": f"{world.gateway}/unsubscribe/{header}.{swapped}.{signature}",
        "expired": forged(world, ann_message, days_old=61),
        "not a token": f"{world.gateway}/unsubscribe/hello",
    }
    answers = {name: httpx.post(url, data=ONE_CLICK) for name, url in attempts.items()}

    assert {name: a.status_code for name, a in answers.items()} == {
        "another secret": 403,
        "Bob's message in Ann's link": 403,
        "expired": 410,
        "not a token": 403,
    }
    assert answers["expired"].json()["error"]["code"] == "link_expired"
    assert httpx.get(attempts["expired"]).status_code == 410  # the page says so too
    assert email_on(world, "ann") and email_on(world, "bob")
    assert world.service.get_status(ann_message)["receipts"] == []


def test_emails_without_a_user_or_from_a_critical_rule_carry_no_link(world: World) -> None:
    _, url = world.email(user_id=None)
    assert url is None
    save_template(world.settings, key="alert", channel="email", subject="Sign-in", text="Was it you?")
    add_rule(
        world.settings, eventType="security.alert", channels=["email"], templateKey="alert", critical=True
    )
    EventNotificationService(world.settings).process_event(
        "security.alert", user_id="cy", data={"email": "cy@example.com"}
    )
    mail = world.smtp.wait_for(2)[1]
    assert mail["List-Unsubscribe"] is None


def test_without_a_secret_no_email_carries_a_link(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet], smtp: SmtpSink
) -> None:
    settings = make_settings(
        EMAIL_HOST=smtp.host, EMAIL_PORT=str(smtp.port), PUBLIC_BASE_URL="https://notify.example.com"
    )
    fleet(settings, [Channel.EMAIL])
    service = NotificationService(settings)
    final_status(service, service.send_email(to="ann@example.com", subject="Hi", text="Hello", user_id="ann"))
    assert smtp.wait_for(1)[0]["List-Unsubscribe"] is None


NOT_A_BASE_URL = "PUBLIC_BASE_URL must be an http(s) URL"


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"UNSUBSCRIBE_SECRET": "short"}, "UNSUBSCRIBE_SECRET must be at least 32 bytes"),
        ({"PUBLIC_BASE_URL": "notify.example.com"}, "PUBLIC_BASE_URL must be an http(s) URL"),
        ({"PUBLIC_BASE_URL": "https://notify.example.com/?x=1"}, "PUBLIC_BASE_URL must be an http(s) URL"),
        (
            {"PUBLIC_BASE_URL": "https://notify.example.com/\r\nX: y"},
            "PUBLIC_BASE_URL must be an http(s) URL",
        ),
    ],
)
def test_bad_link_settings_are_refused_at_start(env: dict[str, str], complaint: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(complaint)):
        Settings.from_env(env)


def test_the_public_base_url_loses_its_trailing_slash() -> None:
    assert Settings.from_env({"PUBLIC_BASE_URL": "https://notify.example.com/kai/"}).public_base_url == (
        "https://notify.example.com/kai"
    )
