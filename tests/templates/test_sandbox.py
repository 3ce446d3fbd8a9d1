"""Hostile templates and hostile data: a template reaches neither Python objects, builtins
nor files, and data is only ever printed, never evaluated.

The whitelist refuses what it can see in the source (before pybars compiles anything); the
name lookup of compiled templates refuses the rest at render time (attributes reached
through ordinary names such as ``format`` on a string)."""

from __future__ import annotations

import sys

import pytest

from shared.errors import RenderError
from shared.templates.engine import PartError, TemplateSource, compile_source, render
from shared.templates.helpers import HELPERS
from shared.templates.syntax import MAX_BLOCK_DEPTH, MAX_SOURCE_CHARS, MAX_TAGS, TemplateSyntaxError, check

#: A value only the process environment holds: no render may ever print it.
SECRET = "env-secret-0a1b2c3d"


def text_template(text: str) -> TemplateSource:
    return TemplateSource("t", "email", "en", 1, {"subject": "s", "text": text})


def render_text(text: str, data: dict[str, object], *, strict: bool = True) -> str:
    out = render(compile_source(text_template(text), known_partials=set()), data, strict=strict, partials={})
    return str(out["text"])


def compiled_template_modules() -> set[str]:
    return {m for m in sys.modules if m.startswith("pybars._templates")}


#: (hostile source, words of the reason it is refused)
HOSTILE_SOURCES = [
    ("{{__class__}}", "not a variable name"),
    ("{{this.__class__.__mro__}}", "not a variable name"),
    ("{{../__dict__}}", "not a variable name"),
    ("{{@root.__init__.__globals__}}", "not a variable name"),
    ('{{lookup . "__globals__"}}', "unknown helper 'lookup'"),
    ("{{lookup this name}}", "unknown helper 'lookup'"),
    ('{{log "x"}}', "unknown helper 'log'"),
    ("{{helperMissing}}", "'helperMissing' is reserved"),
    ("{{blockHelperMissing}}", "'blockHelperMissing' is reserved"),
    ("{{#lookup x}}y{{/lookup}}", "unknown block helper"),
    ("{{> ../../etc/passwd}}", "a partial is named by a plain name"),
    ("{{> /etc/passwd}}", "a partial is named by a plain name"),
    ('{{> "footer"}}', "a partial is named by a plain name"),
    ("{{> [footer]}}", "path literals"),
    ("{{> (lookup . 'x')}}", "sub-expressions"),
    ("{{#each (items)}}x{{/each}}", "sub-expressions"),
    ("{{{{raw}}}}{{x}}{{{{/raw}}}}", "raw blocks"),
    ("{{{[__class__]}}}", "path literals"),
    ("{{&this.__class__}}", "not a variable name"),
    ('{{default x "{{y}}"}}', "{{ inside another"),
    ("one\ntwo\x00three", "control character U+0000"),
    ("bell\x07", "control character U+0007"),
    ("{{#if a}}" * (MAX_BLOCK_DEPTH + 1) + "x" + "{{/if}}" * (MAX_BLOCK_DEPTH + 1), "nested deeper"),
    ("{{a}}" * (MAX_TAGS + 1), f"more than {MAX_TAGS}"),
    ("x" * (MAX_SOURCE_CHARS + 1), f"over {MAX_SOURCE_CHARS} characters"),
]


@pytest.mark.parametrize(("source", "reason"), HOSTILE_SOURCES, ids=[s[:40] for s, _ in HOSTILE_SOURCES])
def test_a_hostile_template_is_refused_before_it_compiles(source: str, reason: str) -> None:
    """Given a template reaching for objects, builtins, files or unbounded compile work, when
    it is checked, then it is refused with the reason, and pybars compiled nothing."""
    before = compiled_template_modules()

    with pytest.raises(TemplateSyntaxError) as caught:
        check(source, html=True, helpers=HELPERS, partials={"footer"})

    assert reason in caught.value.problem.message
    assert compiled_template_modules() == before


def test_a_refusal_names_the_line_of_a_control_character() -> None:
    with pytest.raises(PartError) as caught:
        compile_source(text_template("fine\nfine\nnot\x00fine"), known_partials=set())

    assert (caught.value.part, caught.value.problem.line) == ("text", 3)


def test_a_brace_joined_to_a_tag_by_whitespace_control_is_refused() -> None:
    """Given ``{ {{~x}}}``, which the whitelist reads as an escaped ``{{x}}`` but pybars,
    after stripping the space for ``~``, would read as the unescaped ``{{{x}}}``, when it is
    compiled for an HTML part, then it is refused, so escaping cannot be bypassed."""
    source = TemplateSource("t", "email", "en", 1, {"subject": "s", "html": "<p>\n{ {{~name}}}</p>"})

    with pytest.raises(PartError) as caught:
        compile_source(source, known_partials=set())

    assert caught.value.part == "html"
    assert "brace beside" in caught.value.problem.message


def test_whitespace_control_still_works() -> None:
    assert render_text("a   {{~name~}}   b", {"name": "X"}) == "aXb"


@pytest.mark.parametrize(
    "text",
    [
        "{{name.format}}",
        "{{name.format_map}}",
        "{{#with name}}{{format}}{{/with}}",
        "{{#each names}}{{format}}{{/each}}",
        "{{#each names}}{{this.format}}{{/each}}",
    ],
)
def test_a_name_on_a_string_is_nothing_not_a_python_method(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given data whose string is a Python format string walking to ``os.environ``, when a
    template names ``format`` on it (an ordinary, whitelisted name), then nothing of the
    environment is printed: names are keys of the data's objects, never attributes."""
    monkeypatch.setenv("KAI_TEST_SECRET", SECRET)
    walk = "{0.__init__.__globals__[sys].modules[os].environ[KAI_TEST_SECRET]}"

    out = render_text(text, {"name": walk, "names": [walk]})

    assert SECRET not in out
    assert "class" not in out and "<" not in out


@pytest.mark.parametrize(
    ("text", "data"),
    [
        ("{{count.real}}{{count.numerator}}{{count.bit_length}}", {"count": 5}),
        ("{{flag.real}}", {"flag": True}),
        ("{{#with items}}{{append}}{{pop}}{{clear}}{{/with}}", {"items": [1, 2]}),
        ("{{#with obj}}{{keys}}{{values}}{{items}}{{get}}{{/with}}", {"obj": {}}),
        ("{{price.as_integer_ratio}}", {"price": 1.5}),
    ],
)
def test_names_never_reach_methods_of_numbers_lists_or_objects(text: str, data: dict[str, object]) -> None:
    """Given names that are methods of Python values, when rendered leniently, then each
    renders as nothing and the data is left as it was (``append``/``pop`` never ran)."""
    before = repr(data)

    assert render_text(text, data, strict=False) == ""
    assert repr(data) == before


def test_list_items_and_length_still_resolve() -> None:
    assert render_text("{{items.length}} {{items.0}} {{items.1.name}}", {"items": ["a", {"name": "b"}]}) == (
        "2 a b"
    )


def test_names_outside_the_data_are_missing_not_found_elsewhere() -> None:
    """``constructor``, ``lookup`` or ``log`` are only keys of the data: strictly a missing
    variable, leniently nothing, and never pybars' own helpers or anything of the object."""
    for name in ("constructor", "lookup", "log", "prototype", "keys"):
        with pytest.raises(RenderError, match=f"missing variable '{name}'"):
            render_text(f"{{{{{name}}}}}", {})
        assert render_text(f"[{{{{{name}}}}}]", {}, strict=False) == "[]"
    assert render_text("{{lookup}}-{{log}}", {"lookup": "L", "log": "G"}) == "L-G"


def test_data_is_printed_never_evaluated() -> None:
    """Given data values that are template syntax, when rendered, then they appear as text
    (HTML-escaped in HTML parts), and keys such as ``__class__`` are just data."""
    data = {
        "name": "{{secret}} {{#each x}}loop{{/each}} {{> footer}}",
        "secret": SECRET,
        "obj": {"__class__": "c", "__globals__": "g"},
    }
    source = TemplateSource("t", "email", "en", 1, {"subject": "{{name}}", "html": "<p>{{name}}</p>"})

    out = render(compile_source(source, known_partials=set()), data, strict=True, partials={})

    assert out["subject"] == data["name"]
    assert out["html"] == "<p>{{secret}} {{#each x}}loop{{/each}} {{&gt; footer}}</p>"
    assert render_text("{{#each obj}}{{@key}}={{this}};{{/each}}", data) == "__class__=c;__globals__=g;"


def test_data_keys_the_template_cannot_name_stay_unreachable() -> None:
    """``_``-prefixed keys cannot be named (the whitelist refuses them), so a data key such
    as ``__class__`` never becomes a way to name an attribute."""
    with pytest.raises(TemplateSyntaxError):
        check("{{obj.__class__}}", html=False, helpers=HELPERS, partials=set())
    assert render_text("{{obj.class}}", {"obj": {"__class__": "x"}}, strict=False) == ""
