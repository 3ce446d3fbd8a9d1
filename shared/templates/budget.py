"""What one render may cost: CPU time and output size, enforced while it runs.

A small template can ask for an enormous render: ``{{#each a}}{{#each ../a}}{{#each ../../a}}x``
over a 1,000-item array is a billion iterations, and partials calling partials twice each
grow the same way. Checking the output afterwards is too late, so the block helpers
(``each``/``if``/``unless``/``with``) and every partial call go through a :class:`RenderBudget`
that, before each block body or iteration, checks the render's CPU time and, after it, adds
the body's new output to a running total; either over its limit raises
:class:`~shared.errors.RenderLimitExceeded` at once.

Time is the rendering thread's CPU time, not wall time: on a loaded machine a render may
wait for a CPU far longer than it computes, and that must not fail a message permanently.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.config import DEFAULT_TEMPLATE_MAX_OUTPUT_BYTES, DEFAULT_TEMPLATE_RENDER_TIMEOUT_MS, Settings
from shared.errors import RenderError, RenderLimitExceeded
from shared.templates.partials_graph import MAX_PARTIAL_DEPTH, chain

Block = Callable[[Any], Any]


@dataclass(frozen=True)
class RenderLimits:
    """CPU milliseconds and UTF-8 bytes one message's render (all its parts) may use."""

    timeout_ms: int = DEFAULT_TEMPLATE_RENDER_TIMEOUT_MS
    max_output_bytes: int = DEFAULT_TEMPLATE_MAX_OUTPUT_BYTES

    @classmethod
    def of(cls, settings: Settings) -> RenderLimits:
        return cls(settings.template_render_timeout_ms, settings.template_max_output_bytes)


def output_bytes(output: Any) -> int:
    """UTF-8 size of what a block returned: a string, pybars' flat list of strings, or None."""
    if output is None:
        return 0
    pieces = [output] if isinstance(output, str) else output
    return sum(len(piece) if piece.isascii() else len(piece.encode()) for piece in pieces)


class RenderBudget:
    """One render's allowance. Not thread-safe: a render runs on one thread."""

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.deadline = time.thread_time() + limits.timeout_ms / 1000
        self.used_bytes = 0
        # Bytes already counted inside the block at each open level, so a block's own output
        # is counted once however deeply it is nested.
        self._counted_inside: list[int] = [0]
        # The partials being rendered, outermost first.
        self._partials: list[str] = []

    def check_time(self) -> None:
        if time.thread_time() > self.deadline:
            raise RenderLimitExceeded(
                f"the template took over {self.limits.timeout_ms} ms of CPU time to render "
                "(TEMPLATE_RENDER_TIMEOUT_MS); loops over large data multiply"
            )

    def add_output(self, size: int) -> None:
        self.used_bytes += size
        if self.used_bytes > self.limits.max_output_bytes:
            raise RenderLimitExceeded(
                f"the template rendered over {self.limits.max_output_bytes} bytes "
                "(TEMPLATE_MAX_OUTPUT_BYTES); loops over large data multiply"
            )

    def run(self, block: Block, scope: Any) -> Any:
        """Render one block body (or iteration, or partial) within the budget."""
        self.check_time()
        self._counted_inside.append(0)
        try:
            output = block(scope)
        finally:
            inside = self._counted_inside.pop()
        size = output_bytes(output)
        self.add_output(size - inside)
        self._counted_inside[-1] += size
        return output

    # The block helpers, with pybars' calling convention ``helper(this, options, *args)``.

    def each(self, this: Any, options: Mapping[str, Any], context: Any) -> Any:
        # Imported here: pybars is loaded by the first compile, never at start-up.
        from pybars import Scope, strlist

        try:
            count = len(context)
        except TypeError:
            count = 0
        if count == 0:
            return self.run(options["inverse"], this)
        keyed = isinstance(context, Mapping)
        result = strlist()
        for index, item in enumerate(context):
            positions: dict[str, Any] = {"index": index, "first": index == 0, "last": index == count - 1}
            value = item
            if keyed:
                positions["key"] = item
                value = context[item]
            result.grow(self.run(options["fn"], Scope(value, this, options["root"], **positions)))
        return result

    def if_(self, this: Any, options: Mapping[str, Any], context: Any) -> Any:
        return self.run(options["fn"] if context else options["inverse"], this)

    def unless(self, this: Any, options: Mapping[str, Any], context: Any) -> Any:
        # As pybars: {{else}} inside {{#unless}} renders nothing.
        return None if context else self.run(options["fn"], this)

    def with_(self, this: Any, options: Mapping[str, Any], context: Any) -> Any:
        return self.run(options["fn"], context)

    def partial(self, name: str, renderer: Callable[..., Any]) -> Callable[..., Any]:
        """``renderer`` as partial ``name``, whose every inclusion is a block of this budget.
        Saving refuses partials that include each other or nest too deep; this stops those
        saved before that check with the reason rather than a Python recursion error."""

        def call(scope: Any, **options: Any) -> Any:
            if name in self._partials:
                cycle = [*self._partials[self._partials.index(name) :], name]
                raise RenderError(f"partials include each other: {chain(cycle)}")
            if len(self._partials) >= MAX_PARTIAL_DEPTH:
                raise RenderError(
                    f"partials nested deeper than {MAX_PARTIAL_DEPTH}: {chain([*self._partials, name])}"
                )
            self._partials.append(name)
            try:
                return self.run(lambda s: renderer(s, **options), scope)
            finally:
                self._partials.pop()

        return call

    def helpers(self, plain: Mapping[str, Callable[..., Any]]) -> dict[str, Any]:
        """The helpers a render gets: ``plain`` plus the budgeted block helpers.

        pybars adds its own built-ins underneath; ``lookup`` and ``log`` are not in the
        whitelist, so they are blanked (a name of the data is looked up instead), and a block
        without a known helper is refused rather than iterated unbudgeted."""
        return {
            **plain,
            "each": self.each,
            "if": self.if_,
            "unless": self.unless,
            "with": self.with_,
            "lookup": None,
            "log": None,
            "blockHelperMissing": _no_block_helper,
        }


def _no_block_helper(_this: Any, _options: Any, _context: Any) -> Any:
    raise RenderError("a block without a known helper")
