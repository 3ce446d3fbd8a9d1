"""The data a template renders with: plain values only, and missing names made visible.

pybars3 resolves names with ``context[name]``, falling back to ``getattr`` (and calls what
it finds) when that fails, and renders a missing name as "". Data is therefore copied into
dicts whose missing keys answer at once (no ``getattr`` fallback ever runs on them):

- strict (the default): a :class:`Missing` marker, which is empty to ``#if``/``#unless``/
  ``#each`` and the ``default`` helper, but raises :class:`MissingVariable` the moment it is
  written into the output or given to a formatting helper;
- lenient: ``None``, which pybars renders as "".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from shared.errors import RenderError

#: Data nested deeper than this is refused rather than recursed into.
MAX_DEPTH = 32


class MissingVariable(RenderError):
    def __init__(self, path: str) -> None:
        super().__init__(f"missing variable {path!r} in the message data")
        self.path = path


class Missing:
    """A name the data lacks, remembered by its path for the error message."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def __bool__(self) -> bool:
        return False

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def __getitem__(self, name: Any) -> Missing:
        return Missing(f"{self.path}.{name}")

    def get(self, name: Any, default: Any = None) -> Missing:
        return self[name]

    def __str__(self) -> str:
        raise MissingVariable(self.path)


class StrictData(dict[str, Any]):
    path: str = ""

    def __missing__(self, key: str) -> Missing:
        return Missing(f"{self.path}.{key}" if self.path else str(key))

    def get(self, key: str, default: Any = None) -> Any:
        return self[key]


class LenientData(dict[str, Any]):
    def __missing__(self, key: str) -> None:
        return None

    def get(self, key: str, default: Any = None) -> Any:
        return self[key]


def prepare_data(value: Any, *, strict: bool, path: str = "", depth: int = 0) -> Any:
    """A copy of JSON-like ``value`` built from plain types and the dicts above. Anything
    else (objects, callables) is refused: a template must never reach Python attributes."""
    if depth > MAX_DEPTH:
        raise RenderError(f"template data nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        result: StrictData | LenientData = StrictData() if strict else LenientData()
        if isinstance(result, StrictData):
            result.path = path
        for key, item in value.items():
            name = str(key)
            result[name] = prepare_data(
                item, strict=strict, path=f"{path}.{name}" if path else name, depth=depth + 1
            )
        return result
    if isinstance(value, list | tuple):
        return [prepare_data(item, strict=strict, path=f"{path}[]", depth=depth + 1) for item in value]
    raise RenderError(f"template data at {path or 'top level'} is a {type(value).__name__}, not JSON")
