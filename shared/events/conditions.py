"""Rule conditions: tests on an event, all of which must hold for the rule to fire.

Each is ``{"field": "data.amount", "op": ">", "value": 100}``; the string form
``"data.amount > 100"`` is accepted and stored structured. Fields are ``data.<path>``,
``userId`` or ``eventType``. A condition on a field the event lacks does not hold (except
``not_exists``), and comparing values of different kinds does not hold either: a rule
never fires by accident of a type mismatch.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from typing import Any

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "in": lambda a, b: isinstance(b, list) and a in b,
    "contains": lambda a, b: isinstance(a, list | str) and b in a,
}
UNARY = {"exists", "not_exists"}
#: Rules stay cheap to evaluate per event.
MAX_CONDITIONS = 20

_FIELD_RE = re.compile(r"^(?:data(?:\.[A-Za-z0-9_-]+)+|userId|eventType)$")
_TEXT_RE = re.compile(r"^\s*(\S+)\s*(==|!=|>=|<=|>|<|in|contains|exists|not_exists)\s*(.*?)\s*$")
_BAREWORD_RE = re.compile(r"^(?:'[^']*'|[A-Za-z0-9_.@:+-]+)$")
_MISSING = object()


def parse(raw: Any) -> dict[str, Any]:
    """One condition in its stored form, or ValueError saying what is wrong."""
    if isinstance(raw, str):
        match = _TEXT_RE.match(raw)
        if match is None:
            raise ValueError(f"cannot read condition {raw!r}; write e.g. 'data.amount > 100'")
        field, op, literal = match.groups()
        if op in UNARY:
            raw = {"field": field, "op": op}
        else:
            try:
                value = json.loads(literal)
            except ValueError:
                if not _BAREWORD_RE.match(literal):
                    raise ValueError(f"cannot read the value {literal!r} of condition {raw!r}") from None
                value = literal.strip("'")
            raw = {"field": field, "op": op, "value": value}
    if not isinstance(raw, dict):
        raise ValueError("a condition is an object {field, op, value} or a string 'data.x > 1'")
    field, op = raw.get("field"), raw.get("op")
    if not isinstance(field, str) or not _FIELD_RE.match(field):
        raise ValueError(f"condition field {field!r} must be data.<path>, userId or eventType")
    if op not in OPERATORS and op not in UNARY:
        raise ValueError(f"unknown operator {op!r} (use {', '.join([*OPERATORS, *sorted(UNARY)])})")
    if op in UNARY:
        return {"field": field, "op": op}
    if "value" not in raw:
        raise ValueError(f"condition on {field} needs a value")
    return {"field": field, "op": op, "value": raw["value"]}


def _lookup(field: str, event_type: str, user_id: str | None, data: dict[str, Any]) -> Any:
    if field == "eventType":
        return event_type
    if field == "userId":
        return user_id if user_id is not None else _MISSING
    value: Any = data
    for segment in field.split(".")[1:]:
        if isinstance(value, dict) and segment in value:
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return _MISSING
    return value


def holds(condition: dict[str, Any], event_type: str, user_id: str | None, data: dict[str, Any]) -> bool:
    value = _lookup(condition["field"], event_type, user_id, data)
    op = condition["op"]
    if op == "exists":
        return value is not _MISSING and value is not None
    if op == "not_exists":
        return value is _MISSING or value is None
    if value is _MISSING:
        return False
    try:
        return bool(OPERATORS[op](value, condition["value"]))
    except TypeError:
        return False


def all_hold(conditions: list[Any], event_type: str, user_id: str | None, data: dict[str, Any]) -> bool:
    return all(holds(c, event_type, user_id, data) for c in conditions)
