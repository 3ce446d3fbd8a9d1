"""A rule's escalation steps: what makes them valid, and what each refusal says."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pydantic
import pytest

from shared.events import escalation
from shared.events.rules import RuleInput

IN_APP = {"channel": "in_app"}


def rule(steps: Any, **fields: Any) -> RuleInput:
    return RuleInput.model_validate(
        {"name": "r", "eventType": "a.b", "templateKey": "k", "steps": steps, **fields}
    )


def test_steps_give_the_rule_its_channels_and_are_stored_as_given() -> None:
    steps = [
        IN_APP,
        {"channel": "email", "after": "30m", "if": "notRead"},
        {"channel": "sms", "after": "4h", "if": "notRead"},
    ]

    given = rule(steps)

    assert given.channels == ["in_app", "email", "sms"]
    assert given.model_dump()["steps"] == steps


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("45s", timedelta(seconds=45)),
        ("30m", timedelta(minutes=30)),
        ("4h", timedelta(hours=4)),
        ("2d", timedelta(days=2)),
    ],
)
def test_a_duration_has_a_unit_of_seconds_minutes_hours_or_days(text: str, span: timedelta) -> None:
    assert escalation.parse_duration(text) == span


REFUSED = [
    ([IN_APP], "at least two steps"),
    ([IN_APP, {"channel": "email", "after": "1m", "if": "notRead"}] * 3, "at most 5 steps"),
    (
        [{"channel": "email", "after": "1m"}, {"channel": "sms", "after": "2m", "if": "failed"}],
        "first step goes at once",
    ),
    ([IN_APP, {"channel": "email", "if": "notRead"}], "needs after"),
    ([IN_APP, {"channel": "email", "after": "1m"}], "needs after"),
    ([IN_APP, {"channel": "email", "after": "30x", "if": "notRead"}], "whole number"),
    ([IN_APP, {"channel": "email", "after": "0s", "if": "notRead"}], "whole number"),
    ([IN_APP, {"channel": "email", "after": "31d", "if": "notRead"}], "at most 30 days"),
    ([IN_APP, {"channel": "email", "after": "1m", "if": "seen"}], "notRead"),
    (
        [{"channel": "email"}, {"channel": "sms", "after": "1m", "if": "notRead"}],
        "notRead needs an in_app first step",
    ),
    ([IN_APP, {"channel": "in_app", "after": "1m", "if": "notRead"}], "each channel once"),
    ([IN_APP, {"channel": "webhook", "after": "1m", "if": "notRead"}], "rules send on"),
    ([IN_APP, {"channel": "fax", "after": "1m", "if": "notRead"}], "fax"),
    (
        [
            IN_APP,
            {"channel": "email", "after": "2h", "if": "notRead"},
            {"channel": "sms", "after": "1h", "if": "notRead"},
        ],
        "in order of their after",
    ),
    ([IN_APP, {"channel": "email", "after": "1m", "if": "notRead", "when": "now"}], "Extra inputs"),
]


@pytest.mark.parametrize(("steps", "says"), REFUSED, ids=[r[1] for r in REFUSED])
def test_steps_that_make_no_escalation_are_refused_with_the_reason(steps: list[Any], says: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=says) as caught:
        rule(steps)
    assert "steps" in {error["loc"][0] for error in caught.value.errors()}


def test_channels_that_disagree_with_the_steps_are_refused() -> None:
    steps = [IN_APP, {"channel": "email", "after": "1m", "if": "notRead"}]

    assert rule(steps, channels=["in_app", "email"]).channels == ["in_app", "email"]
    with pytest.raises(pydantic.ValidationError, match="channels and steps disagree"):
        rule(steps, channels=["sms"])


def test_a_rule_that_would_both_escalate_and_digest_is_refused() -> None:
    steps = [IN_APP, {"channel": "email", "after": "1m", "if": "notRead"}]

    with pytest.raises(
        pydantic.ValidationError, match=r"escalates \(steps\) or digests \(digest\), not both"
    ):
        rule(steps, digest={"window": "10m"})
