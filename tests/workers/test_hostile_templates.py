"""Hostile template data through real workers on RabbitMQ: data that turns a saved template
into a bomb stops within its render budget, and data that would inject an email header
through a rendered subject fails its message for good with the reason; ordinary messages
from the same templates are delivered."""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import select

from producer.service import NotificationService
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import MessageTemplate, Notification, utcnow
from shared.db.rls import system_scope
from shared.db.session import session_scope
from shared.templates import store
from shared.templates.syntax import MAX_TAGS
from tests.conftest import Fleet, final_status

LOOPS = (
    "{{#each a}}{{#each ../a}}{{#each ../../a}}{{#each ../../../a}}"
    "{{@root.pad}}"
    "{{/each}}{{/each}}{{/each}}{{/each}}"
)


def test_a_template_bomb_fails_its_message_for_good_with_the_reason(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet]
) -> None:
    """Given an in-app template of four nested loops, when one message's data has 200 items
    (1.6 billion iterations, no output) and another's has 40 items and a 1 KB string (2.5 GB
    of output), then both end failed after one attempt with the limit named, and a message
    with small data from the same template is delivered."""
    settings = make_settings(TEMPLATE_RENDER_TIMEOUT_MS="100", TEMPLATE_MAX_OUTPUT_BYTES="65536")
    with session_scope(settings.database_url) as session:
        given = {"key": "loops", "channel": "in_app", "title": "Loops", "message": LOOPS}
        store.save(
            session,
            store.TemplateInput.model_validate({**given, "sampleData": {"a": [1], "pad": "p"}}),
            default_locale="en",
        )
    fleet(settings, [Channel.IN_APP], threads=2)
    service = NotificationService(settings)

    cpu = service.send_in_app_notification(
        user_id="u-cpu", template="loops", data={"a": list(range(200)), "pad": ""}
    )
    output = service.send_in_app_notification(
        user_id="u-out", template="loops", data={"a": list(range(40)), "pad": "x" * 1000}
    )
    fine = service.send_in_app_notification(
        user_id="u-fine", template="loops", data={"a": [1, 2], "pad": "ok"}
    )

    for message_id, reason in ((cpu, "over 100 ms of CPU time"), (output, "over 65536 bytes")):
        view = final_status(service, message_id, timeout=60)
        assert (view["status"], view["attempts"], view["errorCode"]) == ("failed", 1, "template_render_limit")
        assert reason in (view["lastError"] or "")
    assert final_status(service, fine, timeout=60)["status"] == "delivered"
    with system_scope(settings.database_url) as session:
        inbox = session.scalars(select(Notification)).all()
    assert [(n.user_id, n.message) for n in inbox] == [("u-fine", "ok" * 16)]


def test_data_cannot_inject_a_header_through_a_rendered_subject(
    settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given an email template whose subject prints a variable, when a message's data puts a
    line break and a Bcc header in it, then the message fails without being sent; the same
    template with plain data is sent."""
    with session_scope(settings.database_url) as session:
        given = {"key": "hello", "channel": "email", "subject": "Hi {{name}}", "text": "Hello {{name}}"}
        store.save(
            session,
            store.TemplateInput.model_validate({**given, "sampleData": {"name": "A"}}),
            default_locale="en",
        )
    fleet(settings, [Channel.EMAIL], threads=2)
    service = NotificationService(settings)

    injected = service.send_email(
        to="ann@example.com", template="hello", data={"name": "Ann\r\nBcc: everyone@example.com"}
    )
    plain = service.send_email(to="ann@example.com", template="hello", data={"name": "Ann"})

    view = final_status(service, injected, timeout=60)
    assert (view["status"], view["attempts"], view["errorCode"]) == ("failed", 1, "template_render_error")
    assert "line break" in (view["lastError"] or "")
    assert final_status(service, plain, timeout=60)["status"] == "sent"


def test_a_stored_template_too_large_to_compile_fails_its_message_without_compiling(
    settings: Settings, fleet: Callable[..., Fleet]
) -> None:
    """Given a webhook template of 54 payload strings of 1,000 tags each already in the
    database (stored before whole templates were weighed), when a message uses it, then the
    worker fails that message for good after one attempt naming the limit, rather than
    compiling it for half a minute; a message of a small template is sent meanwhile."""
    wide = {f"field{i}": "{{a}}" * MAX_TAGS for i in range(54)}
    with session_scope(settings.database_url) as session:
        session.add(
            MessageTemplate(
                key="wide",
                channel="webhook",
                locale="en",
                version=1,
                webhook_payload=json.dumps(wide),
                sample_data={},
                is_current=True,
                created_at=utcnow(),
            )
        )
        given = {"key": "small", "channel": "in_app", "title": "Hi", "message": "Hello {{name}}"}
        store.save(session, store.TemplateInput.model_validate(given), default_locale="en")
    fleet(settings, [Channel.WEBHOOK, Channel.IN_APP], threads=2)
    service = NotificationService(settings)

    refused = service.send_webhook(url="https://hooks.example.com/in", template="wide", data={"a": "x"})
    small = service.send_in_app_notification(user_id="u-1", template="small", data={"name": "Ann"})

    view = final_status(service, refused, timeout=60)
    assert (view["status"], view["attempts"], view["errorCode"]) == ("failed", 1, "template_render_limit")
    assert f"{54 * MAX_TAGS} {{{{…}}}} tags" in (view["lastError"] or "")
    assert final_status(service, small, timeout=60)["status"] == "delivered"
