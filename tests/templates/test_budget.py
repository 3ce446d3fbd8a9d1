"""The render budget: template bombs stop early (CPU time, output size), output is counted
once however deeply it is nested, and ordinary templates are unaffected."""

from __future__ import annotations

import time

import pytest

from shared.errors import RenderError, RenderLimitExceeded
from shared.templates.budget import RenderLimits, output_bytes
from shared.templates.engine import Compiled, TemplateSource, compile_source, render
from shared.templates.partials_graph import MAX_PARTIAL_DEPTH

#: Thread CPU seconds a stopped bomb may have used: far over any budget below, and far under
#: what the unbounded renders need (hours for a billion iterations).
STOPPED_WITHIN_CPU_SECONDS = 5.0

NESTED_EACH = "{{#each a}}{{#each ../a}}{{#each ../../a}}x{{/each}}{{/each}}{{/each}}"


def text_template(text: str, channel: str = "sms") -> TemplateSource:
    """A template of one part (``sms``, or ``text`` for a partial), so its output is all counted."""
    return TemplateSource("t", channel, "en", 1, {"text" if channel == "partial" else "sms": text})


def render_text(
    text: str, data: dict[str, object], limits: RenderLimits, partials: dict[str, Compiled] | None = None
) -> str:
    compiled = compile_source(text_template(text), known_partials=set(partials or {}))
    return str(render(compiled, data, strict=True, partials=partials or {}, limits=limits)["sms"])


def test_nested_loops_over_a_large_array_stop_on_cpu_time() -> None:
    """Given three nested #each over 1,000 items (a billion iterations) producing no output,
    when rendered with a 50 ms budget, then it stops with the reason soon after 50 ms."""
    started = time.thread_time()

    with pytest.raises(RenderLimitExceeded, match=r"over 50 ms of CPU time"):
        render_text(NESTED_EACH.replace("x", ""), {"a": list(range(1000))}, RenderLimits(timeout_ms=50))

    assert time.thread_time() - started < STOPPED_WITHIN_CPU_SECONDS


def test_nested_loops_stop_on_output_size_as_it_grows() -> None:
    """Given nested loops printing 1 KB per iteration (a gigabyte in all), when rendered with
    a 64 KiB output cap, then it stops as soon as the output passes the cap."""
    text = "{{#each a}}{{#each ../a}}{{@root.big}}{{/each}}{{/each}}"
    data = {"a": list(range(1000)), "big": "y" * 1000}
    started = time.thread_time()

    with pytest.raises(RenderLimitExceeded, match=r"over 65536 bytes"):
        render_text(text, data, RenderLimits(timeout_ms=60_000, max_output_bytes=64 * 1024))

    assert time.thread_time() - started < STOPPED_WITHIN_CPU_SECONDS


def test_partials_multiplying_each_other_stop_on_cpu_time() -> None:
    """Given 8 partials (as deep as partials may nest) each including the next one 8 times
    (2 million inclusions, no loop at all), when rendered, then the partial calls themselves
    are budgeted."""
    deepest = MAX_PARTIAL_DEPTH - 1
    partials: dict[str, Compiled] = {
        f"p{deepest}": compile_source(text_template("z", channel="partial"), known_partials=set())
    }
    for level in range(deepest - 1, -1, -1):
        source = text_template(f"{{{{> p{level + 1}}}}}" * 8, channel="partial")
        partials[f"p{level}"] = compile_source(source, known_partials=set(partials))
    started = time.thread_time()

    with pytest.raises(RenderLimitExceeded, match="CPU time"):
        render_text("{{> p0}}", {}, RenderLimits(timeout_ms=50), partials)

    assert time.thread_time() - started < STOPPED_WITHIN_CPU_SECONDS


def test_output_is_counted_once_however_deeply_nested() -> None:
    """Given blocks nested four deep, when the cap is the exact output size, then the render
    passes, and one byte less fails: nested output is not counted again by each level."""
    text = (
        "<{{#each rows}}[{{#with this}}{{#if cells}}"
        "{{#each cells}}{{this}},{{/each}}"
        "{{/if}}{{/with}}]{{/each}}>"
    )
    data = {"rows": [{"cells": ["ab", "é"]}, {"cells": ["cd"]}]}
    expected = "<[ab,é,][cd,]>"
    size = len(expected.encode())

    assert render_text(text, data, RenderLimits(max_output_bytes=size)) == expected
    with pytest.raises(RenderLimitExceeded, match=f"over {size - 1} bytes"):
        render_text(text, data, RenderLimits(max_output_bytes=size - 1))


def test_all_parts_of_a_message_share_one_budget() -> None:
    source = TemplateSource("t", "email", "en", 1, {"subject": "{{s}}", "text": "{{s}}", "html": "{{s}}"})
    compiled = compile_source(source, known_partials=set())

    render(compiled, {"s": "x" * 10}, strict=True, partials={}, limits=RenderLimits(max_output_bytes=30))
    with pytest.raises(RenderLimitExceeded):
        render(compiled, {"s": "x" * 10}, strict=True, partials={}, limits=RenderLimits(max_output_bytes=29))


def test_an_ordinary_template_renders_well_within_the_default_budget() -> None:
    """A receipt of 200 lines renders with the default budget, #each/#if/#unless/#with and
    @index/@key/@first/@last behaving as before."""
    text = (
        "{{#each lines}}{{#if @first}}first {{/if}}{{@index}}:{{name}}{{#unless @last}}, {{/unless}}{{/each}}"
        "|{{#each totals}}{{@key}}={{this}};{{/each}}|{{#with customer}}{{name}}{{/with}}"
        "|{{#each empty}}x{{else}}none{{/each}}|{{#if no}}x{{else}}else{{/if}}"
    )
    data = {
        "lines": [{"name": f"item{i}"} for i in range(200)],
        "totals": {"net": 10, "tax": 2},
        "customer": {"name": "Ann"},
        "empty": [],
        "no": False,
    }

    out = render_text(text, data, RenderLimits())

    assert out.startswith("first 0:item0, 1:item1, ")
    assert out.endswith("199:item199|net=10;tax=2;|Ann|none|else")


def test_output_bytes_counts_utf8() -> None:
    assert output_bytes(None) == 0
    assert output_bytes("abc") == 3
    assert output_bytes(["é", "€", "x"]) == 2 + 3 + 1


def test_partials_including_each_other_fail_the_render_cleanly() -> None:
    """A cycle stored before saves checked how partials include each other fails that
    render naming the cycle, instead of recursing until Python stops it."""
    ping = compile_source(text_template("a{{#if go}}{{> pong}}{{/if}}", "partial"), known_partials={"pong"})
    pong = compile_source(text_template("b{{> ping}}", "partial"), known_partials={"ping"})

    with pytest.raises(RenderError, match="partials include each other: ping → pong → ping"):
        render_text("{{> ping}}", {"go": True}, RenderLimits(), {"ping": ping, "pong": pong})
