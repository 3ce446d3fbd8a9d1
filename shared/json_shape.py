"""Limits on the shape of JSON a caller sends, beside its size in bytes.

A body under the byte cap can still be costly or unstorable: ten thousand nested arrays
exhaust recursive code downstream (validation, ``json.dumps``, template data), a hundred
thousand tiny values multiply per-value work, PostgreSQL cannot store ``\\u0000`` in
``jsonb`` or ``text`` (the insert fails after everything else succeeded), and a lone UTF-16
surrogate (``\\ud800``, a valid JSON escape) is no Unicode text at all: it has no UTF-8
encoding, so sizing, storing or sending it fails far from the door. The gateway
checks every request body and the Python API every payload with :func:`check_shape`,
iteratively, so the check itself cannot overflow the stack.
"""

from __future__ import annotations

import re
from typing import Any

from shared.errors import PayloadTooLarge, ValidationError

#: Deepest nesting of objects and arrays (the body itself is level 1). Real payloads stay
#: under ten; template data is refused past the same depth.
MAX_JSON_DEPTH = 32
#: Most values (objects, arrays, strings, numbers, booleans, nulls) in one document. A
#: 256 KiB body holds at most ~130,000; real payloads hold hundreds.
MAX_JSON_VALUES = 20_000

#: Half of a surrogate pair on its own; Python strings may hold one, UTF-8 cannot.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonShapeError(ValueError):
    """A document over a shape limit. ``too_large`` says it is a size (HTTP 413) problem."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def check_shape(document: Any, max_values: int = MAX_JSON_VALUES) -> None:
    """Raise :class:`JsonShapeError` if ``document`` nests deeper than :data:`MAX_JSON_DEPTH`,
    holds more than ``max_values`` values, or has a NUL character or a lone surrogate in a
    string (a key or a value)."""
    pending: list[tuple[Any, int]] = [(document, 1)]
    values = 0
    while pending:
        value, depth = pending.pop()
        values += 1
        if values > max_values:
            raise JsonShapeError(f"more than {max_values} values in one document", too_large=True)
        if isinstance(value, dict | list | tuple) and depth > MAX_JSON_DEPTH:
            raise JsonShapeError(f"objects and arrays nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key)
                pending.append((item, depth + 1))
        elif isinstance(value, list | tuple):
            pending.extend((item, depth + 1) for item in value)
        else:
            _check_text(value)


def validate_shape(document: Any, field: str) -> None:
    """:func:`check_shape` for the Python API: a refusal is a ValidationError naming
    ``field`` (PayloadTooLarge for too many values), as the gateway's 400/413/422."""
    try:
        check_shape(document)
    except JsonShapeError as exc:
        error = PayloadTooLarge if exc.too_large else ValidationError
        raise error(f"{field}: {exc}", [{"field": field, "message": str(exc)}]) from None


def _check_text(value: Any) -> None:
    if not isinstance(value, str):
        return
    if "\x00" in value:
        raise JsonShapeError("a string holds the NUL character (\\u0000), which cannot be stored")
    # An ASCII string (most of them) cannot hold a surrogate; isascii() is a flag lookup.
    if not value.isascii() and _LONE_SURROGATE.search(value):
        raise JsonShapeError("a string holds a lone surrogate (\\ud800-\\udfff), which is not Unicode text")
