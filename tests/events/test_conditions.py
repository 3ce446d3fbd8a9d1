"""Rule conditions: parsing the string and object forms, and matching events."""

from __future__ import annotations

from typing import Any

import pytest

from shared.events.conditions import all_hold, holds, parse

DATA = {"amount": 150, "plan": "pro", "tags": ["vip"], "nested": {"country": "FR"}, "items": [{"sku": "a"}]}

#: (condition as written, whether it holds for DATA)
CASES: list[tuple[Any, bool]] = [
    ("data.amount > 100", True),
    ("data.amount <= 100", False),
    ("data.plan == 'pro'", True),
    ('data.plan != "pro"', False),
    ("data.nested.country == FR", True),
    ('data.plan in ["pro", "team"]', True),
    ('data.tags contains "vip"', True),
    ("data.items.0.sku == a", True),
    ("data.coupon exists", False),
    ("data.coupon not_exists", True),
    ("data.coupon == 1", False),
    ("data.plan > 3", False),  # different kinds never match by accident
    ({"field": "userId", "op": "==", "value": "u1"}, True),
    ({"field": "eventType", "op": "==", "value": "order.created"}, True),
]


@pytest.mark.parametrize(("written", "expected"), CASES)
def test_conditions_match_events(written: Any, expected: bool) -> None:
    assert holds(parse(written), "order.created", "u1", DATA) is expected


@pytest.mark.parametrize(
    "bad",
    [
        "amount > 100",
        "data.amount >>> 100",
        "data.amount > ",
        "data.plan == pro; DROP",
        {"field": "data.x", "op": "~=", "value": 1},
        {"field": "data.x", "op": "=="},
        {"field": "__class__", "op": "==", "value": 1},
        42,
    ],
)
def test_malformed_conditions_are_refused(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse(bad)


def test_every_condition_must_hold() -> None:
    conditions = [parse("data.amount > 100"), parse("data.plan == basic")]

    assert all_hold(conditions, "order.created", None, DATA) is False
    assert all_hold([], "order.created", None, DATA) is True
