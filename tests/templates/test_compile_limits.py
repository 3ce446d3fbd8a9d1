"""What compiling a template may cost, without a database: the whole template is weighed
before pybars sees it (not each part alone), a compile stops at its CPU deadline, a stored
template over a limit fails its message rather than the process, and the compiled-template
cache stays within its weight however many versions pass through it."""

from __future__ import annotations

import sys

import pytest

from shared.errors import RenderError, RenderLimitExceeded
from shared.templates import engine
from shared.templates.engine import CompileLimitExceeded, TemplateSource, compile_source, weigh
from shared.templates.limits import MAX_TEMPLATE_CHARS, MAX_TEMPLATE_TAGS
from shared.templates.syntax import MAX_TAGS

#: A webhook payload of strings each just inside the per-part tag limit.
SPREAD = {f"field{i}": "{{a}}" * MAX_TAGS for i in range(3)}


def webhook(payload: object, key: str = "hook", version: int = 1) -> TemplateSource:
    return TemplateSource(key, "webhook", "en", version, {}, payload)


def compiled_modules() -> set[str]:
    return {name for name in sys.modules if name.startswith("pybars._templates.")}


def test_the_tag_limit_counts_every_part_together() -> None:
    """Given a webhook payload of three strings of 1,000 tags each (each part allowed alone),
    when it is compiled, then it is refused for its tags in all, before pybars compiles any."""
    before = compiled_modules()

    with pytest.raises(CompileLimitExceeded, match=f"{3 * MAX_TAGS} {{{{…}}}} tags") as caught:
        compile_source(webhook(SPREAD), known_partials=set())

    assert f"at most {MAX_TEMPLATE_TAGS}" in str(caught.value)
    assert compiled_modules() == before


def test_the_size_limit_counts_every_part_together() -> None:
    half = "x" * (MAX_TEMPLATE_CHARS // 2 + 1)
    source = TemplateSource("t", "email", "en", 1, {"subject": "Hi", "text": half, "html": half})

    with pytest.raises(CompileLimitExceeded, match="characters"):
        compile_source(source, known_partials=set())


def test_a_partial_weighs_twice_because_it_compiles_for_text_and_html() -> None:
    text = "{{a}}" * 10
    assert weigh(TemplateSource("p", "partial", "en", 1, {"text": text})).tags == 20
    assert weigh(TemplateSource("t", "sms", "en", 1, {"sms": text})).tags == 10
    assert weigh(webhook({"a": [text, {"b": text}], "plain": "no tags", "n": 1})).tags == 20


def test_a_compile_stops_at_its_deadline() -> None:
    """Given a template within the counts, when its compile may take 1 ms of CPU, then it is
    stopped with the reason instead of running to the end."""
    source = TemplateSource("t", "sms", "en", 1, {"sms": "{{a}} and " * MAX_TAGS})

    with pytest.raises(CompileLimitExceeded, match="over 1 ms of CPU time to compile"):
        compile_source(source, known_partials=set(), timeout_ms=1)

    compiled = compile_source(TemplateSource("t", "sms", "en", 1, {"sms": "Hi {{a}}"}), known_partials=set())
    assert engine.render(compiled, {"a": "Ann"}, strict=True, partials={})["sms"] == "Hi Ann"


def test_a_stored_template_over_a_limit_fails_to_render_without_compiling() -> None:
    """A version saved before a limit existed is refused when a message uses it: a render
    limit (the message fails for good), not an exception that would retry it."""
    engine.forget_cache()
    before = compiled_modules()

    with pytest.raises(RenderLimitExceeded, match="tags"):
        engine.cached(webhook(SPREAD, key="old"))
    with pytest.raises(RenderError, match="no longer compiles"):
        engine.cached(TemplateSource("bad", "sms", "en", 1, {"sms": "{{__class__}}"}))

    assert compiled_modules() == before


def test_compiled_templates_leave_no_module_behind() -> None:
    """pybars registers each compiled template as a module: kept there, every save's check
    and every evicted version would stay in memory for the life of the process."""
    before = compiled_modules()

    for version in range(5):
        compile_source(TemplateSource("t", "sms", "en", version, {"sms": "Hi {{a}}"}), known_partials=set())

    assert compiled_modules() == before


def test_the_cache_keeps_within_its_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given a cache with room for three and a half versions' weight, when ten versions are
    used in turn, then the least recently used are dropped and the weight stays under the
    cap; a version used again is compiled again and renders the same."""
    engine.forget_cache()
    text = "Hi {{a}} " + "x" * 280
    one = weigh(TemplateSource("t", "sms", "en", 1, {"sms": text})).memory
    monkeypatch.setattr(engine, "CACHE_MAX_WEIGHT", 3 * one + one // 2)

    for version in range(1, 11):
        engine.cached(TemplateSource("t", "sms", "en", version, {"sms": text}))
        assert engine.cache_weight() <= 3 * one + one // 2

    assert engine.cached_versions() == [("t", "sms", "en", 8), ("t", "sms", "en", 9), ("t", "sms", "en", 10)]
    again = engine.cached(TemplateSource("t", "sms", "en", 1, {"sms": text}))
    assert engine.render(again, {"a": "Ann"}, strict=True, partials={})["sms"].startswith("Hi Ann")
    engine.forget_cache()
