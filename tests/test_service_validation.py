"""The Python producer API validates like the gateway: the same refusals for header
injection, bad addresses and numbers, hostile JSON shapes (lone surrogates included) and
oversized payloads, as ValidationError subclasses, with nothing stored or enqueued; and the
same normalisation."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from producer import EventType
from producer.events import EventNotificationService
from producer.service import NotificationService
from shared.config import Settings
from shared.db.models import EventLog, NotificationLog
from shared.db.rls import system_scope
from shared.db.session import session_scope
from shared.errors import PayloadTooLarge, ValidationError
from shared.json_shape import MAX_JSON_DEPTH, MAX_JSON_VALUES
from shared.templates import store
from tests.conftest import Queues


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


EMAIL = {"to": "user@example.com", "subject": "Hi", "text": "t"}
WEBHOOK = {"url": "https://example.com/hook", "payload": {"ok": True}}

#: (send method, keyword arguments, error type, field the error names)
REFUSED: list[tuple[str, dict[str, Any], type[ValidationError], str]] = [
    ("send_email", {**EMAIL, "to": "a@example.com\r\nBcc: b@example.com"}, ValidationError, "to"),
    ("send_email", {**EMAIL, "to": "a@example.com, b@example.com"}, ValidationError, "to"),
    ("send_email", {**EMAIL, "to": "Someone <a@example.com>"}, ValidationError, "to"),
    ("send_email", {**EMAIL, "to": "not-an-address"}, ValidationError, "to"),
    ("send_email", {**EMAIL, "subject": "hi\nBcc: b@example.com"}, ValidationError, "subject"),
    ("send_email", {**EMAIL, "subject": "hi\u2028Bcc: b@example.com"}, ValidationError, "subject"),
    ("send_email", {**EMAIL, "subject": "hi\x0bthere"}, ValidationError, "subject"),
    ("send_email", {**EMAIL, "subject": "hi\x85there"}, ValidationError, "subject"),
    ("send_email", {**EMAIL, "text": "NUL \x00 here"}, ValidationError, "payload"),
    ("send_email", {**EMAIL, "text": "x" * (256 * 1024 + 1)}, PayloadTooLarge, "payload"),
    ("send_sms", {"to": "4155550100", "message": "m"}, ValidationError, "to"),
    ("send_sms", {"to": "+1 555", "message": "m"}, ValidationError, "to"),
    ("send_webhook", {**WEBHOOK, "url": "https://user:pw@example.com/"}, ValidationError, "url"),
    ("send_webhook", {**WEBHOOK, "url": "http://127.0.0.1:99999/"}, ValidationError, "url"),
    ("send_webhook", {**WEBHOOK, "url": "http://example.com:80:81/"}, ValidationError, "url"),
    ("send_webhook", {**WEBHOOK, "url": "https://exa\ud800mple.com/"}, ValidationError, "url"),
    ("send_webhook", {**WEBHOOK, "payload": {"deep": nested(MAX_JSON_DEPTH)}}, ValidationError, "payload"),
    ("send_webhook", {**WEBHOOK, "payload": {"v": [0] * MAX_JSON_VALUES}}, PayloadTooLarge, "payload"),
    ("send_webhook", {**WEBHOOK, "payload": {"k\x00": 1}}, ValidationError, "payload"),
    ("send_email", {**EMAIL, "text": "lone \ud800 surrogate"}, ValidationError, "payload"),
    ("send_email", {**EMAIL, "html": "<p>\udfff</p>"}, ValidationError, "payload"),
    ("send_webhook", {**WEBHOOK, "payload": {"\ud83d": 1}}, ValidationError, "payload"),
    (
        "send_in_app_notification",
        {"user_id": "u", "title": "t", "message": "m", "data": {"k": "\udc00"}},
        ValidationError,
        "payload",
    ),
    (
        "send_in_app_notification",
        {"user_id": "u", "title": "t\x00", "message": "m"},
        ValidationError,
        "payload",
    ),
]


@pytest.mark.parametrize(("method", "fields", "error", "field"), REFUSED)
def test_the_python_api_refuses_what_the_gateway_refuses(
    settings: Settings,
    queues: Queues,
    method: str,
    fields: dict[str, Any],
    error: type[ValidationError],
    field: str,
) -> None:
    service = NotificationService(settings)

    with pytest.raises(error) as caught:
        getattr(service, method)(**fields)

    assert field in {str(d.get("field") or "").split(".")[0] for d in caught.value.details}
    with system_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(NotificationLog)) == 0
    assert sum(queues.depths().values()) == 0


def test_event_data_gets_the_same_shape_limits(settings: Settings, queues: Queues) -> None:
    events = EventNotificationService(settings)

    with pytest.raises(ValidationError, match="deeper"):
        events.process_event("order.created", user_id="u", data={"d": nested(MAX_JSON_DEPTH)})
    with pytest.raises(ValidationError, match="NUL"):
        events.process_event("order.created", user_id="u", data={"d": "\x00"})
    with pytest.raises(ValidationError, match="surrogate"):
        events.process_event("order.created", user_id="u", data={"d": "\ud800"})

    with system_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(EventLog)) == 0
    assert sum(queues.depths().values()) == 0


def test_template_data_gets_the_same_shape_limits(settings: Settings, queues: Queues) -> None:
    """Given a stored template, when a message names it with data holding a lone surrogate,
    then the documented ValidationError, not an encoding error from deeper down."""
    with session_scope(settings.database_url) as session:
        given = store.TemplateInput.model_validate(
            {"key": "hi", "channel": "email", "subject": "Hi", "text": "t"}
        )
        store.save(session, given, default_locale="en")
    service = NotificationService(settings)

    with pytest.raises(ValidationError, match="surrogate"):
        service.send_email(to="user@example.com", template="hi", data={"name": "\ud800"})

    with system_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(NotificationLog)) == 0
    assert sum(queues.depths().values()) == 0


def test_the_python_api_normalises_addresses_and_numbers(settings: Settings) -> None:
    service = NotificationService(settings)

    sms = service.send_sms(to="+1 (415) 555-0100", message="m")
    email = service.send_email(**{**EMAIL, "to": "User@Example.COM"})

    assert service.get_status(sms)["recipient"] == "+14155550100"
    assert service.get_status(email)["recipient"] == "User@example.com"


#: What ``process_event`` refuses as the event type, and a word its error must name it by.
NOT_AN_EVENT_TYPE: list[tuple[Any, str]] = [
    ({"eventType": "subscription.payment_failed", "userId": "u", "data": {}}, "dict"),
    (42, "int"),
    (None, "None"),
    (["order.created"], "list"),
    ("", "empty"),
    ("   ", "empty"),
    ("{'eventType': 'order.created'}", "{'eventType'"),
    ("order created", "order created"),
    ("order.created/*", "order.created/*"),
]


@pytest.mark.parametrize(("event_type", "named"), NOT_AN_EVENT_TYPE)
def test_process_event_refuses_what_is_not_an_event_type(
    settings: Settings, queues: Queues, event_type: Any, named: str
) -> None:
    """Given the brief's one-object call (``process_event({...})``) or another value that is
    no event type, then a ValidationError saying what was given and what is expected, and
    no event stored or queued."""
    events = EventNotificationService(settings)

    with pytest.raises(ValidationError) as caught:
        events.process_event(event_type, user_id="u")

    message = str(caught.value)
    assert named in message
    assert "EventType" in message and "order.created" in message
    assert [d["field"] for d in caught.value.details] == ["event_type"]
    with system_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(EventLog)) == 0
    assert sum(queues.depths().values()) == 0


@pytest.mark.anyio
@pytest.mark.parametrize(("event_type", "named"), NOT_AN_EVENT_TYPE[:2])
async def test_aprocess_event_refuses_what_is_not_an_event_type(
    settings: Settings, queues: Queues, event_type: Any, named: str
) -> None:
    events = EventNotificationService(settings)

    with pytest.raises(ValidationError, match=named):
        await events.aprocess_event(event_type, user_id="u")

    assert sum(queues.depths().values()) == 0


def test_process_event_takes_an_event_type_member_or_its_string(settings: Settings) -> None:
    events = EventNotificationService(settings)

    by_member = events.process_event(EventType.ORDER_SHIPPED, user_id="u")
    by_string = events.process_event(" order.shipped ", user_id="u")

    assert events.get_event(by_member)["eventType"] == "order.shipped"
    assert events.get_event(by_string)["eventType"] == "order.shipped"
