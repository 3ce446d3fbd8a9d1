"""Compiling and rendering templates with pybars3: checked first, compiled once, cached.

A template version is immutable, so its compiled parts are cached by
``(key, channel, locale, version)`` and never compiled per message; the cache drops the
least recently used versions beyond a count and an estimated memory. Compiling is costly
(:mod:`~shared.templates.limits`): a template is weighed as a whole before any of it is
compiled, and a compile stops at a CPU deadline (:mod:`~shared.templates.compiler`).
Rendering a compiled template is re-entrant and runs without a lock.

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
from typing import Any

from shared.errors import RenderError, RenderLimitExceeded
from shared.templates import compiler, sandbox, syntax
from shared.templates.budget import RenderBudget, RenderLimits
from shared.templates.context import prepare_data
from shared.templates.helpers import HELPERS
from shared.templates.limits import CompileLimitExceeded, Weight, strings_of, weigh_text

__all__ = ["CompileLimitExceeded"]  # raised by compile_source: callers catch it from here

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
    "push": (PartSpec("title", required=True), PartSpec("message", required=True), PartSpec("actionUrl")),
    #: Chat: the plain text, and a ``payload`` with Slack ``blocks`` and/or a Teams ``card``.
    "chat": (PartSpec("text", required=True),),
    PARTIAL: (PartSpec("text", required=True),),
}

#: Compiled versions kept per process, least recently used dropped first: at most this many,
#: and at most this much estimated memory (:attr:`Weight.memory <shared.templates.limits.Weight.memory>`)
#: in all, so a few large templates cannot hold a worker's memory (one of the largest
#: allowed keeps about 1 MiB; a typical email a few KiB).
CACHE_SIZE = 4096
CACHE_MAX_WEIGHT = 64 * 1024 * 1024
#: CPU time one template's compile may take when it is saved. A process compiling a stored
#: version allows twice as much: a version accepted on a quiet gateway must not fail its
#: messages on a busy worker.
COMPILE_TIMEOUT_MS = 8_000
STORED_COMPILE_TIMEOUT_MS = 2 * COMPILE_TIMEOUT_MS

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
    #: What an email rendered from it is tracked for: ``opens``, ``clicks``.
    tracking: frozenset[str] = frozenset()


@dataclass
class Compiled:
    parts: dict[str, Renderer] = field(default_factory=dict)
    tracking: frozenset[str] = frozenset()
    #: Webhook payload: the document with each string leaf replaced by its renderer.
    payload: Any = None
    partials: frozenset[str] = frozenset()
    weight: Weight = field(default_factory=Weight)


def _weights(source: TemplateSource) -> list[tuple[str, Weight]]:
    """What each part of ``source`` gives its compiler: a partial's text is compiled twice
    (for text and for HTML parts), a payload's strings each once."""
    times = 2 if source.channel == PARTIAL else 1
    weights = [
        (spec.name, weigh_text(text, times=times))
        for spec in CHANNEL_PARTS.get(source.channel, ())
        if (text := source.parts.get(spec.name))
    ]
    payload = sum((weigh_text(text) for text in strings_of(source.payload)), Weight())
    return [*weights, ("payload", payload)] if source.payload is not None else weights


def weigh(source: TemplateSource) -> Weight:
    return sum((weight for _, weight in _weights(source)), Weight())


def _refuse_if_too_large(source: TemplateSource) -> Weight:
    weights = _weights(source)
    total = sum((weight for _, weight in weights), Weight())
    if total.over_the_limits():
        so_far = Weight()
        for part, weight in weights:  # name the part that takes the template over
            so_far += weight
            if so_far.over_the_limits():
                total.refuse_if_over(part=part)
    return total


def partials_used(source: TemplateSource) -> frozenset[str]:
    """The partials ``source`` includes, read by the whitelist alone (nothing compiled).
    Raises TemplateSyntaxError for a source the whitelist refuses."""
    texts = [text for spec in CHANNEL_PARTS.get(source.channel, ()) if (text := source.parts.get(spec.name))]
    used: set[str] = set()
    for text in [*texts, *strings_of(source.payload)]:
        if "{{" in text:
            used |= syntax.check(text, html=False, helpers=HELPERS, partials=None)[1].partials
    return frozenset(used)


def _compile_one(
    source: str, *, html: bool, partials: set[str] | None, used: set[str], deadline: compiler.Deadline
) -> Renderer:
    checked, usage = syntax.check(source, html=html, helpers=HELPERS, partials=partials)
    _check_as_pybars_reads_it(checked, html=html, partials=partials)
    used.update(usage.partials)
    sandbox.seal()
    try:
        return compiler.compile_checked(checked, deadline)
    except CompileLimitExceeded:
        raise
    except Exception as exc:  # pybars reports grammar errors as PybarsError or worse
        message = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise syntax.TemplateSyntaxError(syntax.Problem(_line_of(message), message)) from None


def _check_as_pybars_reads_it(checked: str, *, html: bool, partials: set[str] | None) -> None:
    """pybars rewrites a source before parsing it (``~`` whitespace control strips spaces
    and line breaks next to tags), which can join a stray ``{`` to a tag: ``{ {{~x}}}``
    passes the whitelist as an escaped ``{{x}}`` and reaches pybars as the raw ``{{{x}}}``.
    So what pybars will read must itself pass the whitelist unchanged."""
    rewritten = compiler.whitespace_control(checked)
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


def compile_source(
    source: TemplateSource, *, known_partials: set[str] | None = None, timeout_ms: int = COMPILE_TIMEOUT_MS
) -> Compiled:
    """Compile every part (uncached). Raises :class:`PartError` on the first bad part, and
    CompileLimitExceeded for a template too large (before compiling any of it) or still
    compiling after ``timeout_ms`` of CPU time (all parts together)."""
    compiled = Compiled(weight=_refuse_if_too_large(source), tracking=source.tracking)
    deadline = compiler.Deadline.after(timeout_ms)
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
                compiled.parts[name] = _compile_one(
                    text, html=html, partials=known_partials, used=used, deadline=deadline
                )
            except syntax.TemplateSyntaxError as exc:
                raise PartError(spec.name, exc.problem) from None
            except CompileLimitExceeded as exc:
                exc.part = spec.name
                raise
    if source.payload is not None:
        try:
            compiled.payload = _compile_payload(source.payload, "payload", known_partials, used, deadline)
        except CompileLimitExceeded as exc:
            exc.part = "payload"
            raise
    compiled.partials = frozenset(used)
    return compiled


def _compile_payload(
    value: Any, where: str, partials: set[str] | None, used: set[str], deadline: compiler.Deadline
) -> Any:
    if isinstance(value, str) and "{{" not in value:
        return value  # nothing to render: compiling every plain string would cost ~1 ms each
    if isinstance(value, str):
        try:
            return _compile_one(value, html=False, partials=partials, used=used, deadline=deadline)
        except syntax.TemplateSyntaxError as exc:
            raise PartError(where, exc.problem) from None
    if isinstance(value, dict):
        return {k: _compile_payload(v, f"{where}.{k}", partials, used, deadline) for k, v in value.items()}
    if isinstance(value, list):
        return [_compile_payload(v, f"{where}[{i}]", partials, used, deadline) for i, v in enumerate(value)]
    return value


CacheKey = tuple[str, str, str, int]

#: Versions compiled (or refused) by this process, least recently used first, with the
#: weight each counts for. A refusal is kept too: compiling it again would cost as much.
_cache: OrderedDict[CacheKey, tuple[Compiled | RenderError, int]] = OrderedDict()
_cache_weight = 0
_cache_lock = threading.Lock()


def _key(source: TemplateSource) -> CacheKey:
    return (source.key, source.channel, source.locale, source.version)


def lookup(key: CacheKey) -> Compiled | None:
    """The compiled version if this process has it, without reading or compiling anything.
    Raises the RenderError of a version that could not be compiled."""
    with _cache_lock:
        hit = _cache.get(key)
        if hit is None:
            return None
        _cache.move_to_end(key)
    value = hit[0]
    if isinstance(value, RenderError):
        raise type(value)(str(value))  # a fresh exception: another thread may raise it too
    return value


def cached(source: TemplateSource) -> Compiled:
    """The compiled template for this version, compiled on first use only. A stored version
    that cannot be compiled (over a limit added since it was saved, or no longer passing the
    whitelist) raises RenderError: the message using it fails, the process does not."""
    key = _key(source)
    hit = lookup(key)
    if hit is not None:
        return hit
    what = f"{source.channel} template {source.key!r} version {source.version}"
    result: Compiled | RenderError
    try:
        result = compile_source(source, timeout_ms=STORED_COMPILE_TIMEOUT_MS)
    except CompileLimitExceeded as exc:
        result = RenderLimitExceeded(f"{what} cannot be used: {exc}")
    except PartError as exc:
        result = RenderError(f"{what} no longer compiles: {exc}")
    weight = result.weight.memory if isinstance(result, Compiled) else len(str(result))
    _remember(key, result, weight)
    if isinstance(result, RenderError):
        raise type(result)(str(result))
    return result


def _remember(key: CacheKey, value: Compiled | RenderError, weight: int) -> None:
    global _cache_weight
    with _cache_lock:
        previous = _cache.pop(key, None)
        if previous is not None:
            _cache_weight -= previous[1]
        _cache[key] = (value, weight)
        _cache_weight += weight
        while len(_cache) > 1 and (len(_cache) > CACHE_SIZE or _cache_weight > CACHE_MAX_WEIGHT):
            _, (_, dropped) = _cache.popitem(last=False)
            _cache_weight -= dropped


def cache_weight() -> int:
    """The estimated memory the cached versions keep, in bytes."""
    with _cache_lock:
        return _cache_weight


def cached_versions() -> list[CacheKey]:
    """The cached versions, least recently used first."""
    with _cache_lock:
        return list(_cache)


def forget_cache() -> None:
    global _cache_weight
    with _cache_lock:
        _cache.clear()
        _cache_weight = 0


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
        name: budget.partial(name, p.parts["html"]) for name, p in partials.items() if "html" in p.parts
    }
    text_partials = {
        name: budget.partial(name, p.parts["text"]) for name, p in partials.items() if "text" in p.parts
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
