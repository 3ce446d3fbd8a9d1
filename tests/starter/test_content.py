"""The starter set's content: one email and one in-app template per built-in event type, each
rendering (strictly, through the same path as a send) with its event's example data and with
no data at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from migrations.migrate import upgrade
from producer import EventType
from producer.starter import install_starter
from producer.starter.content import StarterEvent, load
from shared.channels import Channel
from shared.config import Settings
from shared.db.session import session_scope
from shared.payloads import EmailPayload, InAppPayload, Templated
from shared.templates import messages as template_messages
from shared.templates import store
from shared.templates.budget import RenderLimits

STARTER = load()
#: (event, channel, which data, the data)
CASES = [
    pytest.param(event, channel, data, id=f"{event.event_type}-{channel.value}-{which}")
    for event in STARTER
    for channel in (Channel.EMAIL, Channel.IN_APP)
    for which, data in (("example", event.example), ("minimal", {}))
]
#: Signs of a sentence that lost an optional part badly.
GLITCHES = ("  ", " .", " ,", " ;", "()", "None", "null")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A SQLite database holding the starter set, installed as `kai-messaging starter` does."""
    directory: Path = tmp_path_factory.mktemp("starter-content")
    url = f"sqlite:///{directory / 'starter.db'}"
    upgrade(url)
    settings = Settings.from_env({"DATABASE_URL": url, "KAI_VAR_DIR": str(directory)})
    install_starter(settings)
    return settings


def render(settings: Settings, key: str, channel: Channel, data: dict[str, Any]) -> Any:
    with session_scope(settings.database_url) as session:
        locale, version = store.resolve(session, key, channel.value, None, settings.template_default_locale)
        ref = template_messages.reference(key, locale, version, data)
        message = (
            Templated(template=ref, to="ann@example.com")
            if channel is Channel.EMAIL
            else Templated(template=ref)
        )
        return template_messages.render_payload(
            session, channel, message, strict=True, limits=RenderLimits.of(settings)
        )


def test_every_built_in_event_type_has_its_share() -> None:
    assert [event.event_type for event in STARTER] == [member.value for member in EventType]


@pytest.mark.parametrize(("event", "channel", "data"), CASES)
def test_each_template_renders_with_example_and_with_minimal_data(
    installed: Settings, event: StarterEvent, channel: Channel, data: dict[str, Any]
) -> None:
    """Given the installed starter template, when it renders strictly (a missing variable
    would fail the message) with the event's example data or with none, then every part is
    written out and reads as a whole sentence."""
    payload = render(installed, event.event_type, channel, data)

    if channel is Channel.EMAIL:
        assert isinstance(payload, EmailPayload)
        assert payload.html is not None and payload.html.startswith("<!doctype html>")
        assert payload.text is not None
        assert payload.text.startswith("Hi Ann Lee," if data.get("name") else "Hi there,")
        readable = [payload.subject, *payload.text.splitlines()]
    else:
        assert isinstance(payload, InAppPayload)
        assert payload.action_url is not None and payload.action_url.startswith("/")
        readable = [payload.title, payload.message]
    for line in readable:
        assert not any(glitch in line for glitch in GLITCHES), line


def test_the_brief_example_data_shows_in_the_payment_failed_messages(installed: Settings) -> None:
    data = {"subscriptionId": "sub-123", "failureReason": "insufficient_funds"}

    email = render(installed, EventType.SUBSCRIPTION_PAYMENT_FAILED, Channel.EMAIL, data)
    in_app = render(installed, EventType.SUBSCRIPTION_PAYMENT_FAILED, Channel.IN_APP, data)

    assert "your subscription (sub-123)" in email.text
    assert "Reason: insufficient_funds" in email.text
    assert (in_app.title, in_app.action_url) == ("Payment failed", "/billing")
    assert "(insufficient_funds)" in in_app.message
