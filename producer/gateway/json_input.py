"""What the gateway reads as JSON: the media types a body may be declared as, and a parser
that takes a document one way only.

Python's ``json`` is lenient where that lets two readers of one body disagree: it guesses
UTF-16 or UTF-32 from the bytes, keeps the last value of a key named twice (other parsers keep
the first, RFC 8259 section 4 leaves it open), and reads ``NaN`` and ``Infinity``, which are
not JSON and which PostgreSQL's ``jsonb`` refuses. :func:`loads` refuses all three.
"""

from __future__ import annotations

import codecs
import functools
import json
from email.message import Message
from typing import Any, NoReturn

#: The one encoding JSON exchanged between systems has (RFC 8259 section 8.1).
JSON_CHARSET = "utf-8"
#: Distinct Content-Type values whose verdict is remembered: clients repeat theirs.
MEDIA_TYPE_CACHE_SIZE = 64


@functools.lru_cache(maxsize=MEDIA_TYPE_CACHE_SIZE)
def is_json_media_type(content_type: str) -> bool:
    """Whether a ``Content-Type`` value declares JSON: ``application/json`` or a
    structured-syntax ``application/*+json`` (RFC 6839), with no charset or UTF-8."""
    header = Message()
    header["content-type"] = content_type  # parsed by the standard library's MIME rules
    subtype = header.get_content_subtype()
    if header.get_content_maintype() != "application":
        return False
    if subtype != "json" and not (subtype.endswith("+json") and len(subtype) > len("+json")):
        return False
    charset = header.get_content_charset()
    if charset is None:
        return True
    try:
        return codecs.lookup(charset).name == JSON_CHARSET
    except LookupError:
        return False


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
    """The document in ``raw``; ValueError (saying why) unless it is JSON in UTF-8 with no
    key named twice in one object. RecursionError for nesting deeper than the stack."""
    try:
        text = raw.decode(JSON_CHARSET)
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    return _DECODER.decode(text)
