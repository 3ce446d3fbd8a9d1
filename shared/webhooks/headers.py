"""Which request headers a webhook endpoint may set (checked when an endpoint is saved and
again when each request is built), and how their values are shown.

An endpoint's own headers usually carry the receiver's credential (``Authorization: Bearer
…``), so their values are secrets: stored encrypted like the endpoint's signing secret
(:mod:`shared.webhooks.secretbox`), and shown by name with a masked value (:func:`masked`)
in every answer and delivery log."""

from __future__ import annotations

import re

#: RFC 9110 token: what a header name may consist of.
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Headers an endpoint may not set: we own framing, content and signature.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "user-agent",
        "accept-encoding",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)

#: What answers and delivery logs show instead of a custom header's value.
MASK = "\u2022" * 4  # ••••
#: A value at least this long is shown with its last SHOWN_TAIL_CHARS characters after the
#: mask: enough to tell two credentials apart, too few to matter.
SHOW_TAIL_FROM_CHARS = 16
SHOWN_TAIL_CHARS = 4


def masked(value: str) -> str:
    """How a custom header's value is shown."""
    if len(value) >= SHOW_TAIL_FROM_CHARS:
        return MASK + value[-SHOWN_TAIL_CHARS:]
    return MASK
