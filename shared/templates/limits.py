"""What compiling one template may cost, weighed before pybars sees any of it.

pybars3 parses with PyMeta, a pure-Python PEG interpreter: the source becomes one object
per character, each with its own memo dictionary, alternatives backtrack by raising
exceptions, and each tag then becomes about 340 bytes of generated Python that is compiled
again. Measured on the development machine, a compile costs about 1.5 to 2 ms of CPU per
``{{…}}`` tag and 7 to 15 µs per character of plain text, rising faster than linearly as the
garbage collector walks the growing heap (500 tags 0.9 s, 1,000 tags 1.8 s, 4,000 tags
8 s), with a peak of roughly 0.75 KB of memory per source character. The per-part limits of
:mod:`~shared.templates.syntax` therefore do not bound a template of many parts (a webhook
payload may hold any number of strings): these limits weigh all its parts together.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shared.templates.syntax import MAX_SOURCE_CHARS, MAX_TAGS

#: Most ``{{…}}`` tags in one template, all parts together: two full parts (an HTML body and
#: its text twin), about 4 s of CPU to compile at the measured cost.
MAX_TEMPLATE_TAGS = 2 * MAX_TAGS
#: Most characters of template source in one template, all parts together.
MAX_TEMPLATE_CHARS = 2 * MAX_SOURCE_CHARS
#: What a compiled template keeps in memory, per tag, beside its source (measured: about
#: 480 KiB for 1,000 tags).
BYTES_PER_TAG = 480


class CompileLimitExceeded(Exception):
    """A template too large, or too slow, to compile (the message says which limit);
    ``part`` is the part that took it over, when known."""

    def __init__(self, message: str, part: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.part = part


@dataclass(frozen=True)
class Weight:
    """How much template source a compile reads: its characters and ``{{…}}`` tags."""

    chars: int = 0
    tags: int = 0

    def __add__(self, other: Weight) -> Weight:
        return Weight(self.chars + other.chars, self.tags + other.tags)

    @property
    def memory(self) -> int:
        """Roughly the bytes a compiled copy keeps (what the compiled-template cache counts)."""
        return self.chars + BYTES_PER_TAG * self.tags

    def over_the_limits(self) -> bool:
        return self.tags > MAX_TEMPLATE_TAGS or self.chars > MAX_TEMPLATE_CHARS

    def refuse_if_over(self, what: str = "the template", part: str | None = None) -> None:
        if self.tags > MAX_TEMPLATE_TAGS:
            raise CompileLimitExceeded(
                f"{what} has {self.tags} {{{{…}}}} tags in all its parts together; "
                f"a template may have at most {MAX_TEMPLATE_TAGS}",
                part,
            )
        if self.chars > MAX_TEMPLATE_CHARS:
            raise CompileLimitExceeded(
                f"{what} has {self.chars} characters in all its parts together; "
                f"a template may have at most {MAX_TEMPLATE_CHARS}",
                part,
            )


def weigh_text(text: str, *, times: int = 1) -> Weight:
    # Counting "{{" over-counts nothing the whitelist lets through (raw blocks are refused),
    # and costs one pass over the text, not a parse.
    return Weight(len(text) * times, text.count("{{") * times)


def strings_of(value: Any) -> Iterator[str]:
    """Every string value in a JSON document (the strings of a webhook payload)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_of(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_of(item)
