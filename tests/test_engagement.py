"""Engagement tracking, end to end: a template asking for it gets its email's links sent
through the click redirect and a pixel, by the real worker to the SMTP peer; the gateway's
pixel and redirect record ``opened`` and ``clicked`` receipts, a person's apart from a mail
scanner's, and redirect only where the email's own links went."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from html import unescape
from typing import Any

import httpx
import pytest

from producer.events import EventNotificationService
from producer.gateway.app import create_app
from producer.service import NotificationService
from shared import engagement
from shared.channels import Channel
from shared.config import Settings
from shared.db.rls import system_scope
from shared.db.session import session_scope
from shared.errors import TemplateError
from shared.events import contacts, rules
from shared.templates import store
from tests.conftest import SERVER_KEY, Fleet, final_status
from tests.gateway.server import LiveServer, free_port
from tests.readme import example_after
from tests.sinks.smtp_sink import SmtpSink

SECRET = "tracking-secret-for-tests-0123456789abcdef"
API = {"Authorization": f"Bearer {SERVER_KEY}"}
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko)"
SCANNER = "Mozilla/5.0 (compatible; Barracuda Sentinel URL scanner)"
HTML = (
    '<html><body><p>Hi {{name}}, <a href="https://shop.example/sale?a=1&amp;b=2">see the sale</a>, '
    "<a href='mailto:help@example.com'>write to us</a> or "
    '<a class="x" href="https://shop.example/account">your account</a>.</p></body></html>'
)


@dataclass
class World:
    settings: Settings
    service: NotificationService
    smtp: SmtpSink
    gateway: httpx.Client

    def email(self, template: str = "sale", **more: Any) -> tuple[str, EmailMessage]:
        before = len(self.smtp.received)
        message_id = self.service.send_email(
            to="ann@example.com", template=template, data={"name": "Ann"}, user_id="ann", **more
        )
        assert final_status(self.service, message_id)["status"] == "sent"
        return message_id, self.smtp.wait_for(before + 1)[before]

    def receipts(self, message_id: str) -> list[tuple[str, str, str | None]]:
        shown = self.service.get_status(message_id)["receipts"]
        return [(r["type"], r["code"], r["detail"]) for r in shown]


def save_template(settings: Settings, key: str, **flags: bool) -> None:
    with session_scope(settings.database_url) as session:
        given = store.TemplateInput.model_validate(
            {"key": key, "channel": "email", "subject": "Sale", "text": "Hi {{name}}", "html": HTML, **flags}
        )
        store.save(session, given, default_locale="en")


@pytest.fixture
def world(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet], smtp: SmtpSink
) -> Iterator[World]:
    port = free_port()
    settings = make_settings(
        EMAIL_HOST=smtp.host,
        EMAIL_PORT=str(smtp.port),
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        TRACKING_SECRET=SECRET,
        TRACKING_BOT_WINDOW="300",
    )
    save_template(settings, "sale", trackOpens=True, trackClicks=True)
    save_template(settings, "plain")
    fleet(settings, [Channel.EMAIL, Channel.WEBHOOK])
    with LiveServer(create_app(settings), port=port) as server, httpx.Client(base_url=server.url) as gateway:
        yield World(settings, NotificationService(settings), smtp, gateway)


def html_of(mail: EmailMessage) -> str:
    part = mail.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def links_in(html: str) -> list[str]:
    return [unescape(h) for h in re.findall(r"""href=["']([^"']+)["']""", html)]


def pixel_in(html: str) -> str:
    [src] = re.findall(r'<img src="([^"]+)" width="1" height="1"', html)
    return unescape(src)


def test_a_tracked_template_sends_its_links_through_the_redirect_with_a_pixel(world: World) -> None:
    """Given a template with trackOpens and trackClicks, then the email's web links point to
    the gateway's redirect (opaque: neither the address, the URL nor the id is readable),
    mailto stays, a pixel closes the body; the text part is untouched."""
    message_id, mail = world.email()
    html = html_of(mail)
    sale, mailto, account = links_in(html)
    base = world.settings.public_base_url

    assert sale.startswith(f"{base}/t/c/") and account.startswith(f"{base}/t/c/")
    assert mailto == "mailto:help@example.com"
    assert pixel_in(html).startswith(f"{base}/t/o/")
    for url in (sale, account, pixel_in(html)):
        assert not any(secret in url for secret in (message_id, "ann", "shop.example", "sale"))
    assert html.index("<img") < html.index("</body>")
    text = mail.get_body(preferencelist=("plain",))
    assert text is not None and str(text.get_content()).strip() == "Hi Ann"


def test_a_person_opening_records_one_human_open_and_the_email_is_delivered(world: World) -> None:
    message_id, mail = world.email()
    pixel = pixel_in(html_of(mail))
    time.sleep(0.35)  # past TRACKING_BOT_WINDOW

    for _ in range(2):
        answer = world.gateway.get(pixel, headers={"User-Agent": BROWSER})
        assert (answer.status_code, answer.headers["content-type"]) == (200, "image/gif")
        assert answer.content.startswith(b"GIF89a") and answer.headers["cache-control"] == "no-store, private"

    assert world.receipts(message_id) == [("opened", "human", None)]
    assert world.service.get_status(message_id)["status"] == "delivered"


def test_a_burst_of_opens_is_kept_together_each_once(world: World) -> None:
    """Given many readers opening at once (and one of them twice, in the same burst), then
    the concurrent hits share the gateway's transactions and each email keeps one human open
    and turns delivered."""
    sent = [world.email() for _ in range(6)]
    pixels = [pixel_in(html_of(mail)) for _, mail in sent]
    time.sleep(0.35)  # past TRACKING_BOT_WINDOW

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=str(world.gateway.base_url)) as client:
            hits = [client.get(p, headers={"User-Agent": BROWSER}) for p in [*pixels, pixels[0]]]
            return [answer.status_code for answer in await asyncio.gather(*hits)]

    assert asyncio.run(burst()) == [200] * 7
    for message_id, _ in sent:
        assert world.receipts(message_id) == [("opened", "human", None)]
        assert world.service.get_status(message_id)["status"] == "delivered"


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ({"headers": {"User-Agent": SCANNER}}, "a scanner's User-Agent"),
        ({"headers": {"User-Agent": ""}}, "no User-Agent"),
        ({"method": "HEAD", "headers": {"User-Agent": BROWSER}}, "a HEAD request"),
    ],
    ids=["scanner", "no-agent", "head"],
)
def test_a_scanner_opening_is_counted_apart_and_proves_nothing(
    world: World, how: dict[str, Any], reason: str
) -> None:
    message_id, mail = world.email()
    time.sleep(0.35)

    world.gateway.request(how.get("method", "GET"), pixel_in(html_of(mail)), headers=how["headers"])

    assert world.receipts(message_id) == [("opened", "bot", reason)]
    assert world.service.get_status(message_id)["status"] == "sent"


def test_an_open_right_after_sending_is_a_prefetch(
    make_settings: Callable[..., Settings], world: World
) -> None:
    """Given a window of 60 s, a browser-like fetch as soon as the email was sent is a
    security gateway's prefetch."""
    slow = make_settings(
        EMAIL_HOST=world.smtp.host,
        PUBLIC_BASE_URL=world.settings.public_base_url or "",
        TRACKING_SECRET=SECRET,
        TRACKING_BOT_WINDOW="60000",
    )
    message_id, mail = world.email()
    with LiveServer(create_app(slow)) as other, httpx.Client(base_url=other.url) as gateway:
        gateway.get(
            other.url + "/t/o/" + pixel_in(html_of(mail)).rsplit("/", 1)[1], headers={"User-Agent": BROWSER}
        )

    assert world.receipts(message_id) == [("opened", "bot", "within 60 s of sending")]


def test_a_click_redirects_to_the_emails_own_link_and_is_recorded_per_link(world: World) -> None:
    message_id, mail = world.email()
    sale, _, account = links_in(html_of(mail))
    time.sleep(0.35)

    first = world.gateway.get(sale, headers={"User-Agent": BROWSER})
    again = world.gateway.get(sale, headers={"User-Agent": BROWSER})
    other = world.gateway.get(account, headers={"User-Agent": BROWSER})

    assert (first.status_code, first.headers["location"]) == (302, "https://shop.example/sale?a=1&b=2")
    assert again.headers["location"] == first.headers["location"]
    assert other.headers["location"] == "https://shop.example/account"
    assert sorted(world.receipts(message_id)) == [
        ("clicked", "human", "https://shop.example/account"),
        ("clicked", "human", "https://shop.example/sale?a=1&b=2"),
    ]


def test_forged_or_altered_tokens_redirect_nowhere_and_record_nothing(world: World) -> None:
    """Given the email's real tokens, then one altered by a character, one sealed with
    another secret for a URL of the attacker's choosing, and an open token used as a click
    are a 404 (never a redirect) or a plain pixel, and record nothing."""
    message_id, mail = world.email()
    sale, _, _ = links_in(html_of(mail))
    token = sale.rsplit("/", 1)[1]
    altered = token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]
    stranger = Settings.from_env(
        {"TRACKING_SECRET": "another-secret-" + "x" * 32, "PUBLIC_BASE_URL": "http://h"}
    )
    forged = engagement.seal(stranger, engagement.Mark(message_id, "click", "https://evil.example/"))
    open_token = pixel_in(html_of(mail)).rsplit("/", 1)[1]

    for bad in (altered, forged, open_token, "not-a-token"):
        answer = world.gateway.get(f"/t/c/{bad}", headers={"User-Agent": BROWSER})
        assert answer.status_code == 404 and "location" not in answer.headers
        assert answer.json()["error"]["code"] == "not_found"
    for bad in (altered, forged, token, "not-a-token"):
        pixel = world.gateway.get(f"/t/o/{bad}", headers={"User-Agent": BROWSER})
        assert pixel.status_code == 200 and pixel.content.startswith(b"GIF89a")
    assert world.receipts(message_id) == []


def test_untracked_templates_and_direct_sends_are_left_alone(world: World) -> None:
    _, plain = world.email("plain")
    direct = world.service.send_email(to="ann@example.com", subject="Hi", html=HTML, text="Hi")
    final_status(world.service, direct)
    for mail in (plain, world.smtp.received[-1].message):
        html = html_of(mail)
        assert "/t/c/" not in html and "<img" not in html


def test_a_critical_rule_is_never_tracked_even_with_a_tracked_template(
    world: World, fleet: Callable[..., Fleet]
) -> None:
    """Given a critical rule (a security alert: nobody's campaign) rendering the tracked
    template, then its email carries the plain links and no pixel."""
    body = {"name": "alert", "eventType": "account.locked", "channels": ["email"], "templateKey": "sale"}
    with session_scope(world.settings.database_url) as session:
        rules.create(session, rules.RuleInput.model_validate({**body, "critical": True}), default_locale="en")
    with system_scope(world.settings.database_url) as session:
        contacts.put(session, "ann", contacts.ContactInput(email="ann@example.com"))
    fleet(world.settings, [Channel.EMAIL], events=True)

    EventNotificationService(world.settings).process_event(
        "account.locked", user_id="ann", data={"name": "Ann"}
    )

    html = html_of(world.smtp.wait_for(1, timeout=20)[0])
    assert links_in(html)[0] == "https://shop.example/sale?a=1&b=2" and "<img" not in html


def send_from_the_tracked_template(world: World, how: str, **flags: Any) -> tuple[str, EmailMessage]:
    """An email from the tracked template sent ``how`` (Python API, HTTP send or batch), and
    the mail the SMTP peer received for it."""
    before = len(world.smtp.received)
    fields = {"to": "ann@example.com", "template": "sale", "data": {"name": "Ann"}, "userId": "ann", **flags}
    if how == "python":
        message_id = world.service.send_email(**fields)
    elif how == "http":
        message_id = world.gateway.post("/api/messages/email", json=fields, headers=API).json()["id"]
    else:
        batch = {"messages": [{"channel": "email", **fields}]}
        message_id = world.gateway.post("/api/messages/batch", json=batch, headers=API).json()["results"][0][
            "id"
        ]
    assert final_status(world.service, message_id)["status"] == "sent"
    return message_id, world.smtp.wait_for(before + 1)[before]


#: The sale template's own links, as a mail that is not tracked carries them.
OWN_LINKS = ["https://shop.example/sale?a=1&b=2", "mailto:help@example.com", "https://shop.example/account"]


@pytest.mark.parametrize("how", ["python", "http", "batch"])
def test_a_transactional_email_is_never_tracked_even_with_a_tracked_template(world: World, how: str) -> None:
    """Given the tracked template, when an email is sent from it ``transactional`` (through the
    Python API, the HTTP send or a batch), then it arrives with the template's own links and
    no pixel and its status says transactional; the same email without the flag is tracked."""
    message_id, transactional = send_from_the_tracked_template(world, how, transactional=True)
    _, tracked = send_from_the_tracked_template(world, how)

    assert links_in(html_of(transactional)) == OWN_LINKS and "<img" not in html_of(transactional)
    assert world.service.get_status(message_id)["transactional"] is True
    assert links_in(html_of(tracked))[0].startswith(f"{world.settings.public_base_url}/t/c/")
    assert "/t/o/" in pixel_in(html_of(tracked))


def test_a_transactional_rule_is_never_tracked_even_with_a_tracked_template(
    world: World, fleet: Callable[..., Fleet]
) -> None:
    """Given a rule saved through the API with ``transactional: true`` (an order receipt), which
    renders the tracked template, then its email carries the plain links and no pixel."""
    rule = {
        "name": "receipt",
        "eventType": "order.paid",
        "channels": ["email"],
        "templateKey": "sale",
        "transactional": True,
    }
    saved = world.gateway.post("/api/rules", json=rule, headers=API)
    assert (saved.status_code, saved.json()["transactional"]) == (201, True)
    with system_scope(world.settings.database_url) as session:
        contacts.put(session, "ann", contacts.ContactInput(email="ann@example.com"))
    fleet(world.settings, [Channel.EMAIL], events=True)

    EventNotificationService(world.settings).process_event("order.paid", user_id="ann", data={"name": "Ann"})

    html = html_of(world.smtp.wait_for(1, timeout=20)[0])
    assert links_in(html) == OWN_LINKS and "<img" not in html


def test_a_flag_that_is_not_a_boolean_is_refused_and_nothing_is_sent(world: World) -> None:
    """Given ``"transactional": "yes"`` on a send and on a rule, then each is refused with 422
    in the JSON error shape naming the field, and no message or rule is stored."""
    email = {"to": "ann@example.com", "template": "sale", "data": {}, "transactional": "yes"}
    rule = {"name": "r", "eventType": "order.paid", "channels": ["email"], "templateKey": "sale"}

    sent = world.gateway.post("/api/messages/email", json=email, headers=API)
    saved = world.gateway.post("/api/rules", json={**rule, "transactional": "yes"}, headers=API)

    for answer in (sent, saved):
        assert answer.status_code == 422, answer.text
        assert set(answer.json()["error"]) == {"code", "message", "details"}
        assert [d["field"] for d in answer.json()["error"]["details"]] == ["transactional"]
    assert world.gateway.get("/api/messages", headers=API).json()["items"] == []
    assert world.gateway.get("/api/rules", headers=API).json()["items"] == []


def test_tracking_flags_belong_to_email_templates_only(settings: Settings) -> None:
    with session_scope(settings.database_url) as session:
        given = store.TemplateInput.model_validate(
            {"key": "code", "channel": "sms", "sms": "Your code is {{code}}", "trackClicks": True}
        )
        with pytest.raises(TemplateError, match="trackClicks"):
            store.save(session, given, default_locale="en")


def test_the_template_api_shows_and_keeps_the_flags(world: World) -> None:
    api = {"Authorization": f"Bearer {SERVER_KEY}"}
    [shown] = world.gateway.get("/api/templates/sale", params={"channel": "email"}, headers=api).json()[
        "items"
    ]
    assert (shown["trackOpens"], shown["trackClicks"]) == (True, True)
    patched = world.gateway.patch(
        "/api/templates/sale", json={"channel": "email", "subject": "Sale ends today"}, headers=api
    ).json()
    assert (patched["version"], patched["trackOpens"], patched["trackClicks"]) == (2, True, True)


def test_readme_tracking_example(world: World) -> None:
    """The README's example, run as written against the gateway: the email it sends has its
    link through the redirect and a pixel."""
    namespace: dict[str, Any] = {"gateway": world.gateway.base_url, "key": SERVER_KEY}

    exec(example_after("ask for opens and clicks to be tracked"), namespace)

    assert final_status(world.service, namespace["message_id"])["status"] == "sent"
    html = html_of(world.smtp.wait_for(1)[0])
    [link] = links_in(html)
    assert link.startswith(f"{world.settings.public_base_url}/t/c/") and "/t/o/" in pixel_in(html)


def test_readme_transactional_example(world: World) -> None:
    """The README's transactional example, run as written after the tracking one: the email
    it sends from the tracked template carries its own link and no pixel."""
    namespace: dict[str, Any] = {"gateway": world.gateway.base_url, "key": SERVER_KEY}
    exec(example_after("ask for opens and clicks to be tracked"), namespace)
    final_status(world.service, namespace["message_id"])
    before = len(world.smtp.received)

    exec(example_after("**Transactional messages.**"), namespace)

    assert final_status(world.service, namespace["receipt_id"])["status"] == "sent"
    html = html_of(world.smtp.wait_for(before + 1)[before])
    assert links_in(html) == ["https://shop.example/sale"] and "<img" not in html
