"""Event types the product ships rules and templates for. Any other name of letters, digits
and ``. _ : -`` is an event type too: it simply matches no rule until someone writes one."""

from __future__ import annotations

import enum
import re
from typing import Annotated

from pydantic import StringConstraints

from shared.messages import ID_MAX_CHARS

#: What an event type may be called: the characters a webhook endpoint's ``eventTypes`` may
#: name (:mod:`shared.webhooks.endpoints`, which adds only the ``*`` wildcard), so every
#: event can be subscribed to.
EVENT_TYPE_PATTERN = r"^[A-Za-z0-9_.:-]+$"
#: How much of a refused value an error message quotes.
_SHOWN_CHARS = 80


class EventType(enum.StrEnum):
    USER_REGISTERED = "user.registered"
    USER_PASSWORD_RESET_REQUESTED = "user.password_reset_requested"
    USER_EMAIL_CHANGED = "user.email_changed"
    SECURITY_ALERT = "security.alert"
    SECURITY_NEW_LOGIN = "security.new_login"
    SUBSCRIPTION_CREATED = "subscription.created"
    SUBSCRIPTION_RENEWED = "subscription.renewed"
    SUBSCRIPTION_CANCELLED = "subscription.cancelled"
    SUBSCRIPTION_PAYMENT_FAILED = "subscription.payment_failed"
    PAYMENT_SUCCEEDED = "payment.succeeded"
    ORDER_CREATED = "order.created"
    ORDER_SHIPPED = "order.shipped"
    ORDER_DELIVERED = "order.delivered"
    MESSAGE_RECEIVED = "message.received"


#: An event type as a request field: what :func:`event_type_name` accepts, in the JSON schema.
EventTypeName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=ID_MAX_CHARS, pattern=EVENT_TYPE_PATTERN
    ),
]


def event_type_name(value: object) -> str:
    """``value`` as an event type name (surrounding whitespace dropped). Raises ValueError
    saying what was given and what is expected: a dict passed where the type belongs (the
    one-object call of other SDKs) must not become an event named after its text."""
    expected = (
        "expected an EventType member or an event type name such as 'order.created' "
        "(letters, digits and . _ : -)"
    )
    if not isinstance(value, str):
        shown = "None" if value is None else f"{type(value).__name__} {_shown(value)}"
        raise ValueError(f"{expected}; got {shown}")
    name = str.strip(value)
    if not name:
        raise ValueError(f"{expected}; got an empty string")
    if not re.fullmatch(EVENT_TYPE_PATTERN, name):
        raise ValueError(f"{expected}; got {_shown(name)}")
    return name


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."
