"""Typed payloads: what is stored for each channel loads back as the same value, and a
stored payload that does not fit its channel is refused with a reason."""

from __future__ import annotations

from typing import Any

import pytest

from shared.channels import Channel
from shared.payloads import (
    EmailPayload,
    InAppPayload,
    PayloadError,
    SmsPayload,
    Stored,
    Templated,
    TemplateRef,
    WebhookPayload,
    load,
)

ROUND_TRIPS = [
    (Channel.EMAIL, Stored(EmailPayload(to="ada@example.com", subject="Hi", text="Hello", html=None))),
    (Channel.SMS, Stored(SmsPayload(to="+14155550100", message="Code 1234"), critical=True)),
    (Channel.WEBHOOK, Stored(WebhookPayload(url="https://example.com/h", body=[1, {"a": None}]))),
    (
        Channel.WEBHOOK,
        Stored(
            WebhookPayload(
                url="https://example.com/h",
                body={"type": "order.created"},
                configuration_id="cfg-1",
                retry_schedule_ms=(5_000, 300_000),
                ordering_key="order-7",
            )
        ),
    ),
    (Channel.IN_APP, Stored(InAppPayload(title="T", message="M", type="warning", data={"k": [1]}))),
    (
        Channel.IN_APP,
        Stored(
            Templated(template=TemplateRef("welcome", "fr", 3, {"name": "Ada"}), type="error"), critical=True
        ),
    ),
    (Channel.EMAIL, Stored(Templated(template=TemplateRef("receipt", "en", 1, {}), to="ada@example.com"))),
    (
        Channel.EMAIL,
        Stored(
            Templated(template=TemplateRef("receipt", "en", 1, {}), to="ada@example.com"), transactional=True
        ),
    ),
    (Channel.SMS, Stored(SmsPayload(to="+14155550100", message="Code 1234"), transactional=True)),
]


@pytest.mark.parametrize(("channel", "stored"), ROUND_TRIPS)
def test_a_stored_payload_loads_back_unchanged(channel: Channel, stored: Stored) -> None:
    assert load(channel, stored.to_json()) == stored


def test_the_stored_format_of_earlier_rows_still_loads() -> None:
    """Rows written before the payloads were typed used these same keys."""
    raw = {
        "configurationId": "cfg-1",
        "url": "https://example.com/h",
        "payload": {"type": "t"},
        "retryScheduleMs": [5000],
        "orderingKey": "k",
    }

    loaded = load(Channel.WEBHOOK, raw).payload

    assert loaded == WebhookPayload(
        url="https://example.com/h",
        body={"type": "t"},
        configuration_id="cfg-1",
        retry_schedule_ms=(5000,),
        ordering_key="k",
    )


@pytest.mark.parametrize(
    ("channel", "raw", "reason"),
    [
        (Channel.IN_APP, {"message": "no title"}, "title"),
        (Channel.EMAIL, {"to": "a@example.com", "subject": "s"}, "neither text nor html"),
        (Channel.SMS, {"to": "+14155550100"}, "message"),
        (Channel.SMS, {"to": 14155550100, "message": "x"}, "must be a string"),
        (Channel.WEBHOOK, {"payload": {}}, "url"),
        (Channel.WEBHOOK, {"url": "https://e.com", "retryScheduleMs": "soon"}, "retryScheduleMs"),
        (Channel.IN_APP, {"title": "t", "message": "m", "data": []}, "data"),
        (Channel.EMAIL, {"template": {"key": "k"}, "to": "a@example.com"}, "template reference"),
    ],
)
def test_a_payload_unfit_for_its_channel_is_refused(
    channel: Channel, raw: dict[str, Any], reason: str
) -> None:
    with pytest.raises(PayloadError, match=reason):
        load(channel, raw)
