"""Keyset pagination: a page of rows after a position, in an order that never ties.

Every list the API serves is read in an order whose columns together are unique, so the
position of a page's last row says exactly where the next page starts: a row inserted or
removed meanwhile shifts nothing, and no row is skipped or shown twice (an ``OFFSET`` would
do both). See https://use-the-index-luke.com/no-offset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

T = TypeVar("T")

#: A row's values in the columns of an order, in that order.
Position = tuple[Any, ...]


@dataclass(frozen=True)
class Keyset:
    """An order over ``columns``, which together must be unique among the rows listed."""

    columns: tuple[InstrumentedAttribute[Any], ...]
    descending: bool = False

    def order_by(self) -> list[ColumnElement[Any]]:
        return [column.desc() if self.descending else column.asc() for column in self.columns]

    def after(self, position: Position) -> ColumnElement[bool]:
        """Rows past ``position``: the row comparison (a, b) > (x, y). PostgreSQL starts an
        index scan in this order right at the position, so a deep page reads no more than a
        first one; each value is bound with its own column's type (a time turned to UTC)."""
        if len(position) != len(self.columns):
            raise ValueError(f"a position of {len(self.columns)} values expected")
        row = tuple_(*self.columns)
        return row < tuple(position) if self.descending else row > tuple(position)

    def position(self, row: Any) -> Position:
        return tuple(getattr(row, column.key) for column in self.columns)


def page(
    session: Session, query: Select[T], keyset: Keyset, after: Position | None, limit: int
) -> tuple[list[T], Position | None]:
    """Up to ``limit`` rows of ``query`` past ``after``, and the position to continue from
    (None on the last page)."""
    if after is not None:
        query = query.where(keyset.after(after))
    rows: Sequence[T] = session.scalars(query.order_by(*keyset.order_by()).limit(limit + 1)).all()
    shown = list(rows[:limit])
    more = len(rows) > limit and bool(shown)
    return shown, (keyset.position(shown[-1]) if more else None)
