"""The ``Idempotency-Key`` request header: the body's ``idempotencyKey`` under the name
HTTP clients and SDKs send (https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/).
Either may be given; both must then agree. Sends and events keep the key with their message
or event; creating a template, rule or webhook endpoint goes through
:mod:`producer.idempotent_create`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from producer.gateway.openapi import Param
from producer.idempotent_create import Created, IdempotencyKey
from shared.errors import ValidationError
from shared.messages import ID_MAX_CHARS

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


def creation_key(request: Request, scope: str, body: dict[str, Any]) -> IdempotencyKey | None:
    """The idempotency key of a creating request: its header, or the body's
    ``idempotencyKey`` (taken out of ``body``, which then holds the resource alone); 422 if
    the two differ or the key is empty or too long."""
    given = with_header_key(request, body).get(FIELD, body.get("idempotency_key"))
    body.pop(FIELD, None)
    body.pop("idempotency_key", None)
    if given is None:
        return None
    key = given.strip() if isinstance(given, str) else ""
    if not 0 < len(key) <= ID_MAX_CHARS:
        message = f"an idempotency key holds 1 to {ID_MAX_CHARS} characters"
        raise ValidationError(message, [{"field": FIELD, "message": message}])
    return IdempotencyKey(scope, key)


#: The header as the OpenAPI document lists it on the creating operations.
PARAM = Param(
    "Idempotency-Key",
    "Makes the request safe to retry: the same key with the same request answers with what the "
    "first one created (201 again, `Idempotent-Replayed: true`) instead of creating another; the "
    "same key with a different request is refused (409 `idempotency_key_reused`). Keys belong "
    "to the credential that sends them.",
    {"type": "string", "minLength": 1, "maxLength": ID_MAX_CHARS},
    location="header",
)

#: Marks an answer repeated for a retried request (as Stripe names it).
REPLAYED_HEADER = "Idempotent-Replayed"


def created_response(created: Created) -> JSONResponse:
    """201 with the created resource, marked when a retry is answered with an earlier one."""
    headers = {REPLAYED_HEADER: "true"} if created.replayed else None
    return JSONResponse(created.view, status_code=201, headers=headers)
