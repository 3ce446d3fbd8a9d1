"""pybars3's compiler as a service may call it: one compile at a time, stopped at a CPU
deadline, leaving nothing behind in ``sys.modules``.

pybars' compiler is not thread-safe (pybars3 #42), so every compile holds one lock.
Its parser applies a grammar rule tens of times per source character (see
:mod:`~shared.templates.limits`), so the deadline is checked there, every few thousand rule
applications, and a compile over it stops midway with
:class:`~shared.templates.limits.CompileLimitExceeded`. Time is the compiling thread's CPU
time, as for renders (:mod:`~shared.templates.budget`).

pybars registers each compiled template as a module in ``sys.modules`` and never removes
it: a process that compiles on every save, or drops versions from its cache, would keep
every one of them. The compiled function keeps its own namespace, so the entry is removed.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.templates.limits import CompileLimitExceeded

if TYPE_CHECKING:
    import pybars

Renderer = Callable[..., Any]

#: Grammar rule applications between two looks at the clock (a look is a system call).
_CHECK_EVERY = 2048


@dataclass(frozen=True)
class Deadline:
    """The thread CPU time by which one template (all its parts) must be compiled."""

    timeout_ms: int
    at: float

    @classmethod
    def after(cls, timeout_ms: int) -> Deadline:
        return cls(timeout_ms, time.thread_time() + timeout_ms / 1000)

    def check(self) -> None:
        if time.thread_time() > self.at:
            raise CompileLimitExceeded(
                f"the template took over {self.timeout_ms} ms of CPU time to compile; "
                "make it smaller or split it into partials"
            )


class _Clock:
    """The deadline of the compile under way (compiles hold the lock: one at a time)."""

    deadline: Deadline | None = None
    applications = 0

    def tick(self) -> None:
        self.applications += 1
        if self.applications % _CHECK_EVERY == 0 and self.deadline is not None:
            self.deadline.check()


_clock = _Clock()


def _on_the_clock(grammar: type[Any]) -> type[Any]:
    """``grammar`` (a PyMeta grammar class) looking at the clock as it applies its rules."""

    def _apply(self: Any, rule: Any, rule_name: str, args: Any) -> Any:
        _clock.tick()
        return grammar._apply(self, rule, rule_name, args)

    return type(grammar.__name__, (grammar,), {"_apply": _apply})


#: Built on the first compile: importing pybars builds its grammar, most of a second of CPU
#: that a process which never compiles a template (most workers, the gateway) should not pay.
_compiler: pybars.Compiler | None = None
_compiler_lock = threading.Lock()
_compile_lock = threading.Lock()


def _pybars() -> pybars.Compiler:
    global _compiler
    if _compiler is None:
        with _compiler_lock:
            if _compiler is None:
                import pybars

                class Compiler(pybars.Compiler):  # type: ignore[misc]
                    _handlebars = _on_the_clock(pybars.Compiler._handlebars)
                    _compiler = _on_the_clock(pybars.Compiler._compiler)

                _compiler = Compiler()
    return _compiler


def whitespace_control(source: str) -> str:
    """``source`` as pybars rewrites it before parsing (``~`` whitespace control)."""
    return str(_pybars().whitespace_control(source))


def compile_checked(source: str, deadline: Deadline) -> Renderer:
    """Compile a source the whitelist accepted. Raises CompileLimitExceeded past
    ``deadline``, and whatever pybars raises for a source it cannot read."""
    compiler = _pybars()
    with _compile_lock:
        deadline.check()
        _clock.deadline = deadline
        try:
            renderer: Renderer = compiler.compile(source)
        finally:
            _clock.deadline = None
        sys.modules.pop(renderer.__globals__["__name__"], None)
    return renderer
