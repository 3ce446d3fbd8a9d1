"""Programmed failures of the sinks: each answers a number of requests (or all, while
``remaining`` is None) before the sink answers normally again."""

from __future__ import annotations

from typing import Protocol, TypeVar


class Programmed(Protocol):
    remaining: int | None


F = TypeVar("F", bound=Programmed)


def take_next(faults: list[F]) -> F | None:
    """The first fault with requests left, counting this one; the caller holds its lock."""
    for fault in faults:
        if fault.remaining == 0:
            continue
        if fault.remaining is not None:
            fault.remaining -= 1
        return fault
    return None
