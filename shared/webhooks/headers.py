"""Which request headers a webhook endpoint may set: checked when an endpoint is saved and
again when each request is built."""

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
