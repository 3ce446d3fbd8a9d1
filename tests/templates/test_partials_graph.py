"""How partials include each other, checked as one graph when a partial is saved, and the
deepest nesting allowed still rendering."""

from __future__ import annotations

import pytest

from shared.errors import PartialCycle, PartialsTooDeep
from shared.templates.engine import Compiled, TemplateSource, compile_source, render
from shared.templates.partials_graph import MAX_PARTIAL_DEPTH, check_saving
from shared.templates.syntax import MAX_BLOCK_DEPTH


def test_a_save_closing_a_cycle_is_refused_naming_it() -> None:
    graph = {"layout": {"header"}, "header": {"logo"}, "logo": {"layout"}, "other": set()}

    with pytest.raises(PartialCycle, match="logo → layout → header → logo"):
        check_saving(graph, "logo")


def test_a_partial_including_itself_is_a_cycle() -> None:
    with pytest.raises(PartialCycle, match="a → a"):
        check_saving({"a": {"a"}}, "a")


def test_a_save_is_measured_by_the_longest_chain_through_it() -> None:
    """Both what includes the saved partial and what it includes count."""
    above = {f"u{n}": {f"u{n + 1}"} for n in range(2)} | {"u2": {"mid"}}
    below = {"mid": {"d0"}} | {f"d{n}": {f"d{n + 1}"} for n in range(3)} | {"d3": set()}
    graph = above | below
    check_saving(graph, "mid")  # u0 … u2, mid, d0 … d3: 8 partials

    with pytest.raises(PartialsTooDeep, match="9 deep: u0 → u1 → u2 → mid → d0 → d1 → d2 → d3 → d4"):
        check_saving({**graph, "d3": {"d4"}, "d4": set()}, "d3")


def test_a_cycle_already_stored_elsewhere_does_not_hang_the_check() -> None:
    check_saving({"x": {"y"}, "y": {"x"}, "new": {"z"}, "z": set()}, "new")


def test_the_deepest_nesting_allowed_renders() -> None:
    """Given partials nested as deep as allowed, each nesting blocks as deep as allowed,
    when rendered, then the render completes (Python's recursion limit is not reached)."""
    blocks = "{{#with this}}" * MAX_BLOCK_DEPTH, "{{/with}}" * MAX_BLOCK_DEPTH
    partials: dict[str, Compiled] = {}
    for level in range(MAX_PARTIAL_DEPTH, 0, -1):
        inner = f"{{{{> p{level + 1}}}}}" if level < MAX_PARTIAL_DEPTH else "{{name}}"
        source = TemplateSource(f"p{level}", "partial", "en", 1, {"text": blocks[0] + inner + blocks[1]})
        partials[f"p{level}"] = compile_source(source, known_partials=set(partials))
    template = compile_source(
        TemplateSource("t", "sms", "en", 1, {"sms": blocks[0] + "{{> p1}}" + blocks[1]}),
        known_partials={"p1"},
    )

    assert render(template, {"name": "deep"}, strict=True, partials=partials)["sms"] == "deep"
