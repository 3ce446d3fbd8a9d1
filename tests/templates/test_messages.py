"""``shared/templates/messages.py``: a templated message rendered into its provider's payload,
and the header-bound parts refused when data would break their line."""

from __future__ import annotations

import pytest

from shared.channels import Channel
from shared.config import Settings
from shared.db.session import session_scope
from shared.errors import RenderError
from shared.payloads import EmailPayload, Templated, TemplateRef
from shared.templates import store
from shared.templates.messages import render_payload


def rendered_subject(settings: Settings, name: str) -> str:
    with session_scope(settings.database_url) as session:
        given = {"key": "hi", "channel": "email", "subject": "Hi {{name}}", "text": "Hello"}
        store.save(session, store.TemplateInput.model_validate(given), default_locale="en")
        message = Templated(template=TemplateRef("hi", "en", 1, {"name": name}), to="ann@example.com")
        payload = render_payload(session, Channel.EMAIL, message, strict=True)
    assert isinstance(payload, EmailPayload)
    return payload.subject


@pytest.mark.parametrize(
    "name",
    ["Ann\r\nBcc: a@example.com", "Ann\u2028Bcc: a@example.com", "Ann\x85Bcc", "Ann\x0bBcc", "Ann\x1eBcc"],
)
def test_data_that_breaks_the_subject_line_fails_the_render(settings: Settings, name: str) -> None:
    """Given data with any character the email package would split a header on, when the
    subject renders, then the render fails (the message fails) instead of the provider."""
    with pytest.raises(RenderError, match="line break"):
        rendered_subject(settings, name)


def test_a_subject_with_a_tab_and_non_ascii_text_renders(settings: Settings) -> None:
    assert rendered_subject(settings, "Ann\tRéka \U0001f600") == "Hi Ann\tRéka \U0001f600"
