"""How the gateway reads JSON: one way only.

Python's ``json`` is lenient where that lets two readers of one body disagree: it keeps the
last value of a key named twice (other parsers keep the first; RFC 8259 section 4 leaves it
open), and it reads ``NaN`` and ``Infinity``, which are not JSON and which PostgreSQL's
``jsonb`` refuses. :func:`loads` refuses both.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn


class DuplicateKey(ValueError):
    """An object names the same key twice."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(f"duplicate key {key!r} in an object")
            seen.add(key)
    return found


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


#: One decoder for every request: it keeps no state between documents.
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_no_constant)


def loads(raw: bytes) -> Any:
    """The document in ``raw``; ValueError (saying why) if it is not JSON or names a key
    twice in one object. RecursionError for nesting deeper than the stack."""
    # The encoding as json.loads finds it.
    return _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
