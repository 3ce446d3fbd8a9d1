"""Every list the API answers: ``{"items": [...], "nextCursor": <string or null>}``.

A page holds ``?limit=`` items (DEFAULT_LIMIT, at most MAX_LIMIT); ``nextCursor`` is null on
the last page, otherwise passed back as ``?cursor=`` it fetches the next one. A cursor is
opaque to clients: base64url of the JSON array of the last item's values in the list's order
(:mod:`shared.db.keyset`), so its content may change without notice. Bad values of either
parameter answer 422 naming the parameter.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from producer.gateway.errors import ApiError
from producer.gateway.openapi import Param

#: Items per page when ``?limit=`` is absent.
DEFAULT_LIMIT = 50
#: The largest page a client may ask for: bounds one request's database and JSON work.
MAX_LIMIT = 200
#: Longest cursor accepted; every cursor this API makes is far shorter.
MAX_CURSOR_CHARS = 1024

CURSOR = Param("cursor", "`nextCursor` of the previous page; absent for the first page.", {"type": "string"})
LIMIT = Param(
    "limit",
    f"Items per page, 1 to {MAX_LIMIT}.",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
)
#: The query parameters of every list, for its ``@operation``.
PARAMS = (CURSOR, LIMIT)

#: Decodes one value of a position from its JSON form (and refuses a wrong one by raising).
Decoder = Callable[[Any], Any]


def text(value: Any) -> str:
    if not isinstance(value, str) or "\x00" in value:
        raise ValueError("not a string")
    value.encode()  # a lone surrogate cannot reach the database
    return value


def integer(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("not an integer")
    return value


def moment(value: Any) -> datetime:
    parsed = datetime.fromisoformat(text(value))
    if parsed.tzinfo is None:
        raise ValueError("no UTC offset")
    # Stored in UTC: an instant whose offset moves it past year 9999 or before year 1 has no
    # column value to compare with, so it is no cursor this API made.
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class PageRequest:
    limit: int
    #: The last item's position on the previous page; None for the first page.
    after: tuple[Any, ...] | None


def invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "validation_error", f"{field}: {message}", [{"field": field, "message": message}])


def page_request(request: Request, decoders: Sequence[Decoder]) -> PageRequest:
    """``?limit=`` and ``?cursor=`` of ``request``, the cursor decoded with one decoder per
    value of the list's positions."""
    params = request.query_params
    raw_limit = params.get("limit", str(DEFAULT_LIMIT))
    if not raw_limit.isascii() or not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise invalid("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
    cursor = params.get("cursor")
    after = None if not cursor else decode_cursor(cursor, decoders)
    return PageRequest(int(raw_limit), after)


def encode_cursor(position: Sequence[Any]) -> str:
    values = [v.isoformat() if isinstance(v, datetime) else v for v in position]
    raw = json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, decoders: Sequence[Decoder]) -> tuple[Any, ...]:
    """The position ``cursor`` stands for; 422 for anything :func:`encode_cursor` did not
    make for a list of this shape."""
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError("too long")
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(values, list) or len(values) != len(decoders):
            raise ValueError("wrong shape")
        return tuple(decode(value) for decode, value in zip(decoders, values, strict=True))
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, OverflowError):
        raise invalid("cursor", "is not a nextCursor this list returned") from None


def body(items: list[Any], next_position: Sequence[Any] | None) -> dict[str, Any]:
    """The answer of a list: its page of items and the cursor of the next page."""
    return {"items": items, "nextCursor": None if next_position is None else encode_cursor(next_position)}
