"""The ``Idempotency-Key`` request header: the body's ``idempotencyKey`` under the name
HTTP clients and SDKs send (https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/).
Either may be given; both must then agree."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from shared.errors import ValidationError

HEADER = "idempotency-key"
FIELD = "idempotencyKey"


def with_header_key(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with the header's key as its ``idempotencyKey``; 422 if the two differ."""
    key = request.headers.get(HEADER)
    if key is None:
        return body
    given = body.get(FIELD, body.get("idempotency_key"))
    if given is not None and given != key:
        message = "the Idempotency-Key header and the body's idempotencyKey differ"
        raise ValidationError(message, [{"field": FIELD, "message": message}])
    return {**body, FIELD: key} if given is None else body
