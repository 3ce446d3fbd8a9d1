"""How a latency histogram (counts per bucket, :mod:`shared.analytics`) is kept by the
rollups and added up by queries: **packed into one integer**, bucket ``i`` in bits
``64*i`` to ``64*i + 63``. Adding two histograms is then one addition of two Python
integers (in C, whatever their lengths: no count comes near 2^63, so no field carries into
the next), where adding them bucket by bucket in Python was most of an analytics query's
time.

PostgreSQL stores the integer as its little-endian bytes in a ``bytea`` (the server sends a
row's histogram as one value, and ``int.from_bytes`` reads it in C); SQLite keeps a JSON
list of the counts.
"""

from __future__ import annotations

import json
import sys
from array import array
from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, LargeBinary
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

FIELD_BYTES = 8


def join(counts: Sequence[int]) -> int:
    """The counts packed into one integer."""
    return from_bytes(to_bytes_of(counts))


def split(packed: int) -> list[int]:
    """The counts of a packed histogram, up to its last non-empty bucket."""
    counts = array("Q")
    counts.frombytes(to_bytes(packed))
    if sys.byteorder == "big":
        counts.byteswap()
    return counts.tolist()


def to_bytes(packed: int) -> bytes:
    """As PostgreSQL stores it: the little-endian bytes of whole fields."""
    return packed.to_bytes(-(-packed.bit_length() // (8 * FIELD_BYTES)) * FIELD_BYTES, "little")


def from_bytes(stored: bytes | memoryview) -> int:
    """What PostgreSQL stores, packed again."""
    return int.from_bytes(stored, "little")


def to_bytes_of(counts: Sequence[int]) -> bytes:
    fields = array("Q", counts)
    if sys.byteorder == "big":
        fields.byteswap()
    return fields.tobytes()


class Histogram(TypeDecorator[int]):
    """A histogram column: a packed integer in Python, stored as described above."""

    impl = LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(LargeBinary() if dialect.name == "postgresql" else JSON())

    def process_bind_param(self, value: int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return to_bytes(value) if dialect.name == "postgresql" else split(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        if isinstance(value, bytes | memoryview):
            return from_bytes(value)
        return join(json.loads(value) if isinstance(value, str) else value)
