"""Template checking and rendering without a database: what the whitelist refuses, where
HTML escaping applies, the helpers, and strict missing variables."""

from __future__ import annotations

import sys

import pytest

from shared.errors import RenderError
from shared.templates.engine import Compiled, PartError, TemplateSource, compile_source, render
from shared.templates.helpers import HELPERS
from shared.templates.syntax import TemplateSyntaxError, check


def email(subject: str = "Hi {{name}}", text: str | None = None, html: str | None = None) -> TemplateSource:
    return TemplateSource("t", "email", "en", 1, {"subject": subject, "text": text, "html": html})


def rendered(source: TemplateSource, data: dict[str, object], *, strict: bool = True) -> dict[str, object]:
    return render(compile_source(source, known_partials=set()), data, strict=strict, partials={})


#: (template, reason the check gives)
REFUSED = [
    ("{{['+exit(1)+']}}", "path literals"),
    ("{{[__class__]}}", "path literals"),
    ("{{lookup this (default x)}}", "sub-expressions"),
    ("{{name.__class__}}", "not a variable name"),
    ("{{_private}}", "not a variable name"),
    ("{{shout name}}", "unknown helper 'shout'"),
    ("{{> footer}}", "unknown partial 'footer'"),
    ("{{#each items}}", "never closed"),
    ("{{#if a}}x{{/each}}", "does not close"),
    ("{{/if}}", "closes no open block"),
    ("{{#items}}x{{/items}}", "unknown block helper"),
    ("{{^x}}y{{/x}}", "inverted sections"),
    ("{{{{raw}}}}x{{{{/raw}}}}", "raw blocks"),
    ('{{default name "a\'b"}}', "string literals"),
    ('{{default name "a\\"b"}}', "cannot read"),
    ("{{name}", "unclosed"),
    ("{{ }}", "empty"),
    ("{{!-- }} {{['+exit(1)+']}} --}}", "path literals"),
]


@pytest.mark.parametrize(("source", "reason"), REFUSED)
def test_the_whitelist_refuses_constructs_outside_it(source: str, reason: str) -> None:
    """Given a template using a construct outside the whitelist, checking refuses it with the
    reason, before pybars compiles (and so executes) anything."""
    modules_before = set(sys.modules)

    with pytest.raises(TemplateSyntaxError) as caught:
        check(source, html=True, helpers=HELPERS, partials=set())

    assert reason in caught.value.problem.message
    assert not {m for m in set(sys.modules) - modules_before if m.startswith("pybars._templates")}


def test_a_refusal_names_the_part_and_line() -> None:
    source = email(text="line one\nline two {{#if x}}\nno close")
    with pytest.raises(PartError) as caught:
        compile_source(source, known_partials=set())
    assert caught.value.part == "text"
    assert caught.value.problem.line == 2


def test_html_parts_escape_and_text_parts_do_not() -> None:
    """``{{x}}`` is HTML-escaped only in HTML parts; ``{{{x}}}`` and ``{{&x}}`` never are."""
    out = rendered(
        email(
            subject="{{name}} & co", text="{{name}} {{{name}}}", html="<b>{{name}}</b> {{{name}}} {{&name}}"
        ),
        {"name": "<Tom & 'Jerry'>"},
    )
    assert out["subject"] == "<Tom & 'Jerry'> & co"
    assert out["text"] == "<Tom & 'Jerry'> <Tom & 'Jerry'>"
    assert out["html"] == ("<b>&lt;Tom &amp; &#x27;Jerry&#x27;&gt;</b> <Tom & 'Jerry'> <Tom & 'Jerry'>")


def test_blocks_and_helpers() -> None:
    text = (
        "{{#each items}}{{@index}}:{{title}};{{/each}}"
        "{{#if vip}}VIP{{else}}regular{{/if}} {{#unless paid}}unpaid{{/unless}} "
        '{{#with plan}}{{name}}{{/with}} {{currency amount "EUR"}} {{currency 1500 "JPY"}} '
        '{{pluralize count "seat"}} {{pluralize 1 "seat"}} {{default nickname "friend"}} '
        '{{formatDate when "short"}}'
    )
    out = rendered(
        email(text=text),
        {
            "name": "A",
            "items": [{"title": "a"}, {"title": "b"}],
            "vip": False,
            "paid": False,
            "plan": {"name": "Pro"},
            "amount": 1234.5,
            "count": 3,
            "when": "2026-03-04T10:00:00Z",
        },
    )
    assert out["text"] == "0:a;1:b;regular unpaid Pro €1,234.50 ¥1,500 3 seats 1 seat friend 2026-03-04"


def test_a_missing_variable_fails_strictly_and_renders_empty_leniently() -> None:
    source = email(text="Hello {{user.name}}{{#if coupon}} use {{coupon}}{{/if}}")

    with pytest.raises(RenderError, match=r"missing variable 'user\.name'"):
        rendered(source, {"name": "x"})
    assert rendered(source, {"name": "x", "user": {"name": "Ann"}})["text"] == "Hello Ann"
    assert rendered(source, {"name": "x"}, strict=False)["text"] == "Hello "


def test_a_helper_given_a_missing_variable_fails() -> None:
    with pytest.raises(RenderError, match="missing variable 'amount'"):
        rendered(email(text="{{currency amount}}"), {"name": "x"})


def test_partials_render_in_the_mode_of_the_part_using_them() -> None:
    footer = compile_source(TemplateSource("footer", "partial", "en", 1, {"text": "-- {{company}}"}))
    partials: dict[str, Compiled] = {"footer": footer}
    source = email(text="Hi{{> footer}}", html="<p>Hi</p>{{> footer}}")
    compiled = compile_source(source, known_partials={"footer"})

    out = render(compiled, {"name": "x", "company": "A&B"}, strict=True, partials=partials)

    assert out["text"] == "Hi-- A&B"
    assert out["html"] == "<p>Hi</p>-- A&amp;B"


def test_data_must_be_plain_json() -> None:
    with pytest.raises(RenderError, match="not JSON"):
        rendered(email(text="{{name}}"), {"name": object()})


def test_a_webhook_payload_renders_its_strings_and_keeps_its_shape() -> None:
    source = TemplateSource(
        "hook",
        "webhook",
        "en",
        1,
        {},
        payload={
            "event": "{{type}}",
            "amount": 5,
            "tags": ["{{name}}", True],
            "nested": {"html": "<{{name}}>"},
        },
    )

    out = render(
        compile_source(source, known_partials=set()), {"type": "t", "name": "<b>"}, strict=True, partials={}
    )

    assert out["payload"] == {"event": "t", "amount": 5, "tags": ["<b>", True], "nested": {"html": "<<b>>"}}


def test_a_template_is_compiled_once_per_version() -> None:
    from shared.templates import engine

    source = TemplateSource("cached", "sms", "en", 7, {"sms": "{{x}}"})
    engine.forget_cache()

    first, second = engine.cached(source), engine.cached(source)

    assert first is second
