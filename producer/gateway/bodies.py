"""Reading request bodies safely: a size cap enforced while streaming, a deadline for the
whole body (GATEWAY_BODY_TIMEOUT: a body trickling in is answered 408 and its connection
closed), JSON objects only (:mod:`producer.gateway.json_input`: UTF-8, declared as JSON, no
key named twice), within the shape limits of :mod:`shared.json_shape` (depth, number of
values, no NUL, no lone surrogate)."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import pydantic
from starlette.requests import Request

from producer.gateway import json_input
from producer.gateway.errors import ApiError
from producer.service import validation_error
from shared.gateway_settings import DEFAULT_BODY_TIMEOUT_MS
from shared.json_shape import MAX_JSON_VALUES, JsonShapeError, check_shape

M = TypeVar("M", bound=pydantic.BaseModel)

#: Room for the JSON envelope around the largest payload we accept.
ENVELOPE_BYTES = 16 * 1024

UNSUPPORTED_MEDIA_TYPE = "send the body as application/json (or application/*+json) in UTF-8"


async def read_json_object(
    request: Request, max_bytes: int, *, max_values: int = MAX_JSON_VALUES
) -> dict[str, Any]:
    raw = await read_limited(request, max_bytes + ENVELOPE_BYTES)
    if raw and not json_input.is_json_media_type(request.headers.get("content-type", "")):
        raise ApiError(415, "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE)
    try:
        body = json_input.loads(raw) if raw else None
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "body must be a JSON object")
    try:
        check_shape(body, max_values)
    except JsonShapeError as exc:
        if exc.too_large:
            raise ApiError(413, "payload_too_large", f"request body has {exc}") from None
        raise ApiError(400, "invalid_json", f"body is not acceptable JSON: {exc}") from None
    return body


FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"


async def read_limited(request: Request, max_bytes: int, *, media_type: str | None = None) -> bytes:
    """The raw body, within ``max_bytes`` (413) and the body deadline (408), declared as
    ``media_type`` when one is named (415)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, "payload_too_large", f"request body over {max_bytes} bytes")
    raw = await _read_within_deadline(request, max_bytes)
    given = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type is not None and given != media_type:
        raise ApiError(415, "unsupported_media_type", f"send the body as {media_type}")
    return raw


async def read_form(request: Request, max_bytes: int) -> dict[str, str]:
    """An HTML form body (``application/x-www-form-urlencoded``, UTF-8) as a dict, the last
    value of a repeated field winning; 413, 415 or 400 for anything else."""
    raw = await read_limited(request, max_bytes, media_type=FORM_MEDIA_TYPE)
    try:
        return dict(parse_qsl(raw.decode(), keep_blank_values=True, strict_parsing=bool(raw)))
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "invalid_form", f"the body is not a valid {FORM_MEDIA_TYPE} form") from None


#: The whole body's deadline when the app does not set one (``app.state.body_timeout_s``).
DEFAULT_BODY_TIMEOUT_S = DEFAULT_BODY_TIMEOUT_MS / 1000


async def _read_within_deadline(request: Request, limit: int) -> bytes:
    deadline_s: float = getattr(request.app.state, "body_timeout_s", DEFAULT_BODY_TIMEOUT_S)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(deadline_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, "payload_too_large", f"request body over {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        # Closing the connection: the rest of the body may still be on its way.
        raise ApiError(
            408,
            "request_timeout",
            f"request body not received within {deadline_s:g} s",
            headers={"Connection": "close"},
        ) from None
    return b"".join(chunks)


def parse(model: type[M], body: dict[str, Any]) -> M:
    """``body`` validated as ``model``; a refusal is the API's 422 with field details."""
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as exc:
        raise validation_error(exc) from None
