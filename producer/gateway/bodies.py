"""Reading request bodies safely: a size cap enforced while streaming, JSON objects only."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import pydantic
from starlette.requests import Request

from producer.gateway.errors import ApiError
from producer.service import validation_error

M = TypeVar("M", bound=pydantic.BaseModel)

#: Room for the JSON envelope around the largest payload we accept.
ENVELOPE_BYTES = 16 * 1024


async def read_json_object(request: Request, max_bytes: int) -> dict[str, Any]:
    limit = max_bytes + ENVELOPE_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload_too_large", f"request body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"request body over {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    content_type = request.headers.get("content-type", "")
    if raw and "json" not in content_type.lower():
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "body must be a JSON object")
    _refuse_nul(body)
    return body


def _refuse_nul(body: dict[str, Any]) -> None:
    """PostgreSQL stores no NUL character in text or JSONB, and no caller means to send one:
    refuse NUL (U+0000) anywhere in the body, keys included, before it reaches the database."""
    pending: list[tuple[str, Any]] = [("", body)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    raise _nul(path)
                pending.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            pending.extend((f"{path}.{i}", item) for i, item in enumerate(value))
        elif isinstance(value, str) and "\x00" in value:
            raise _nul(path)


def _nul(field: str) -> ApiError:
    message = "text must not contain NUL characters (U+0000)"
    return ApiError(
        422,
        "validation_error",
        f"{field or 'body'}: {message}",
        [{"field": field or None, "message": message}],
    )


def parse(model: type[M], body: dict[str, Any]) -> M:
    """``body`` validated as ``model``; a refusal is the API's 422 with field details."""
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as exc:
        raise validation_error(exc) from None
