"""Compiling and rendering templates with pybars3: checked first, compiled once, cached.

A template version is immutable, so its compiled parts are cached by
``(key, channel, locale, version)`` for the life of the process and never compiled per
message. pybars' compiler is not thread-safe (pybars3 #42), so every compile holds one
lock; rendering a compiled template is re-entrant and runs without it.

pybars is not a sandbox: a source reaches its compiler only after the whitelist
(:mod:`~shared.templates.syntax`) accepted it, compiled code looks names up through
:mod:`~shared.templates.sandbox` (keys, never attributes), and every render runs within a
:class:`~shared.templates.budget.RenderBudget` of CPU time and output.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.errors import RenderError
from shared.templates import sandbox, syntax
from shared.templates.budget import RenderBudget, RenderLimits
from shared.templates.context import prepare_data
from shared.templates.helpers import HELPERS

if TYPE_CHECKING:
    import pybars

#: The channel name partials are stored under: shared layouts, not messages.
PARTIAL = "partial"


@dataclass(frozen=True)
class PartSpec:
    """One part of a channel's template: its API name, whether it is HTML, whether required."""

    name: str
    html: bool = False
    required: bool = False


#: The parts each channel's template has. Email needs ``text`` or ``html`` (checked apart);
#: webhooks have ``payload``, a JSON document whose strings are templates.
CHANNEL_PARTS: dict[str, tuple[PartSpec, ...]] = {
    "email": (PartSpec("subject", required=True), PartSpec("text"), PartSpec("html", html=True)),
    "sms": (PartSpec("sms", required=True),),
    "in_app": (PartSpec("title", required=True), PartSpec("message", required=True), PartSpec("actionUrl")),
    "webhook": (),
    PARTIAL: (PartSpec("text", required=True),),
}

#: Compiled templates kept per process (oldest dropped first); versions are immutable.
CACHE_SIZE = 4096

Renderer = Callable[..., Any]


@dataclass(frozen=True)
class TemplateSource:
    """A template version as stored: its parts' sources and, for webhooks, the payload."""

    key: str
    channel: str
    locale: str
    version: int
    parts: Mapping[str, str | None]
    payload: Any = None


@dataclass
class Compiled:
    parts: dict[str, Renderer] = field(default_factory=dict)
    #: Webhook payload: the document with each string leaf replaced by its renderer.
    payload: Any = None
    partials: frozenset[str] = frozenset()


#: Built on the first compile: importing pybars builds its grammar, most of a second of CPU
#: that a process which never compiles a template (most workers, the gateway) should not pay.
_compiler: pybars.Compiler | None = None
_compile_lock = threading.Lock()
_compiler_lock = threading.Lock()


def _pybars() -> pybars.Compiler:
    global _compiler
    if _compiler is None:
        with _compiler_lock:
            if _compiler is None:
                import pybars

                _compiler = pybars.Compiler()
    return _compiler


_cache: OrderedDict[tuple[Any, ...], Compiled] = OrderedDict()
_cache_lock = threading.Lock()


def _compile_one(source: str, *, html: bool, partials: set[str] | None, used: set[str]) -> Renderer:
    checked, usage = syntax.check(source, html=html, helpers=HELPERS, partials=partials)
    _check_as_pybars_reads_it(checked, html=html, partials=partials)
    used.update(usage.partials)
    sandbox.seal()
    with _compile_lock:
        try:
            renderer: Renderer = _pybars().compile(checked)
        except Exception as exc:  # pybars reports grammar errors as PybarsError or worse
            message = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise syntax.TemplateSyntaxError(syntax.Problem(_line_of(message), message)) from None
    return renderer


def _check_as_pybars_reads_it(checked: str, *, html: bool, partials: set[str] | None) -> None:
    """pybars rewrites a source before parsing it (``~`` whitespace control strips spaces
    and line breaks next to tags), which can join a stray ``{`` to a tag: ``{ {{~x}}}``
    passes the whitelist as an escaped ``{{x}}`` and reaches pybars as the raw ``{{{x}}}``.
    So what pybars will read must itself pass the whitelist unchanged."""
    rewritten = _pybars().whitespace_control(checked)
    again, _ = syntax.check(rewritten, html=html, helpers=HELPERS, partials=partials)
    if again != rewritten:
        differs = next(i for i, (a, b) in enumerate(zip(again, rewritten, strict=False)) if a != b)
        line = rewritten.count("\n", 0, differs) + 1
        raise syntax.TemplateSyntaxError(
            syntax.Problem(line, "a brace beside a {{~ … ~}} tag changes what the tag means")
        )


def _line_of(message: str) -> int:
    words = message.split()
    if "line" in words:
        after = words[words.index("line") + 1]
        if after.isdigit():
            return int(after)
    return 1


class PartError(Exception):
    """A syntax problem in a named part (the API reports the part, line and reason)."""

    def __init__(self, part: str, problem: syntax.Problem) -> None:
        super().__init__(f"{part}, line {problem.line}: {problem.message}")
        self.part = part
        self.problem = problem


def compile_source(source: TemplateSource, *, known_partials: set[str] | None = None) -> Compiled:
    """Compile every part (uncached). Raises :class:`PartError` on the first bad part."""
    compiled = Compiled()
    used: set[str] = set()
    modes = (False, True) if source.channel == PARTIAL else (None,)
    for spec in CHANNEL_PARTS.get(source.channel, ()):
        text = source.parts.get(spec.name)
        if text is None:
            continue
        for mode in modes:
            html = spec.html if mode is None else mode
            name = spec.name if mode is None else ("html" if mode else "text")
            try:
                compiled.parts[name] = _compile_one(text, html=html, partials=known_partials, used=used)
            except syntax.TemplateSyntaxError as exc:
                raise PartError(spec.name, exc.problem) from None
    if source.payload is not None:
        compiled.payload = _compile_payload(source.payload, "payload", known_partials, used)
    compiled.partials = frozenset(used)
    return compiled


def _compile_payload(value: Any, where: str, partials: set[str] | None, used: set[str]) -> Any:
    if isinstance(value, str) and "{{" not in value:
        return value  # nothing to render: compiling every plain string would cost ~1 ms each
    if isinstance(value, str):
        try:
            return _compile_one(value, html=False, partials=partials, used=used)
        except syntax.TemplateSyntaxError as exc:
            raise PartError(where, exc.problem) from None
    if isinstance(value, dict):
        return {k: _compile_payload(v, f"{where}.{k}", partials, used) for k, v in value.items()}
    if isinstance(value, list):
        return [_compile_payload(v, f"{where}[{i}]", partials, used) for i, v in enumerate(value)]
    return value


def cached(source: TemplateSource) -> Compiled:
    """The compiled template for this version, compiled on first use only."""
    cache_key = (source.key, source.channel, source.locale, source.version)
    with _cache_lock:
        hit = _cache.get(cache_key)
        if hit is not None:
            _cache.move_to_end(cache_key)
            return hit
    compiled = compile_source(source)
    with _cache_lock:
        _cache[cache_key] = compiled
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return compiled


def forget_cache() -> None:
    with _cache_lock:
        _cache.clear()


def _run(renderer: Renderer, data: Any, partials: Mapping[str, Renderer], budget: RenderBudget) -> str:
    helpers = budget.helpers(HELPERS)
    try:
        return str(budget.run(lambda d: renderer(d, helpers=helpers, partials=dict(partials)), data))
    except RenderError:
        raise
    except Exception as exc:  # pybars raises PybarsError, and data can trip Python errors
        message = (str(exc).splitlines() or [""])[0]
        raise RenderError(f"template failed to render: {type(exc).__name__}: {message}") from None


def render(
    compiled: Compiled,
    data: Mapping[str, Any],
    *,
    strict: bool,
    partials: Mapping[str, Compiled],
    limits: RenderLimits | None = None,
) -> dict[str, Any]:
    """Every part rendered with ``data``; the webhook payload as a JSON-ready document.
    All parts share one budget (``limits``): over it, RenderLimitExceeded."""
    budget = RenderBudget(limits or RenderLimits())
    context = prepare_data(dict(data), strict=strict)
    html_partials = {
        name: budget.partial(p.parts["html"]) for name, p in partials.items() if "html" in p.parts
    }
    text_partials = {
        name: budget.partial(p.parts["text"]) for name, p in partials.items() if "text" in p.parts
    }
    html_parts = {spec.name for specs in CHANNEL_PARTS.values() for spec in specs if spec.html}
    result: dict[str, Any] = {}
    for name, renderer in compiled.parts.items():
        partials_here = html_partials if name in html_parts else text_partials
        result[name] = _run(renderer, context, partials_here, budget)
    if compiled.payload is not None:
        result["payload"] = _render_payload(compiled.payload, context, text_partials, budget)
    return result


def _render_payload(value: Any, context: Any, partials: Mapping[str, Renderer], budget: RenderBudget) -> Any:
    if callable(value):
        return _run(value, context, partials, budget)
    if isinstance(value, dict):
        return {k: _render_payload(v, context, partials, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_payload(v, context, partials, budget) for v in value]
    return value


def payload_source(raw: str | None) -> Any:
    return json.loads(raw) if raw else None
