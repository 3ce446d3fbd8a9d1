"""How partials include each other: checked as one graph whenever a partial is saved.

Partials are always used at their current version, so saving one changes every template
that includes it, directly or through other partials. A save that would close a cycle
(``a`` includes ``b``, then ``b`` is saved including ``a``) or make a chain of inclusions
deeper than :data:`MAX_PARTIAL_DEPTH` is refused, naming the partials involved; renders
check the same at run time for partials saved before this check existed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from shared.errors import PartialCycle, PartialsTooDeep

#: Most partials one chain of inclusions may pass through (a template's own level not
#: counted). Each level multiplies the Python frames a render needs with the blocks nested
#: inside it, and a layout calling a header calling a logo is three.
MAX_PARTIAL_DEPTH = 8

Graph = Mapping[str, Collection[str]]


def chain(names: list[str]) -> str:
    return " → ".join(names)


def _cycle_through(graph: Graph, start: str) -> list[str] | None:
    """A path ``start → … → start`` if there is one."""
    seen: set[str] = set()
    path = [start]

    def walk(name: str) -> bool:
        for child in sorted(graph.get(name, ())):
            if child == start:
                path.append(child)
                return True
            if child in seen:
                continue
            seen.add(child)
            path.append(child)
            if walk(child):
                return True
            path.pop()
        return False

    return path if walk(start) else None


def _longest(graph: Graph, start: str) -> list[str]:
    """The longest chain of inclusions from ``start`` (cycles elsewhere are cut short)."""
    best: dict[str, list[str]] = {}
    open_: set[str] = set()

    def walk(name: str) -> list[str]:
        if name in best:
            return best[name]
        if name in open_:
            return []
        open_.add(name)
        below = max((walk(child) for child in sorted(graph.get(name, ()))), key=len, default=[])
        open_.discard(name)
        best[name] = [name, *below]
        return best[name]

    return walk(start)


def check_saving(graph: Graph, saved: str) -> None:
    """Refuse saving partial ``saved`` if, with its new inclusions in ``graph`` (every
    current partial → the partials it includes), partials would include each other through
    it or a chain through it would pass more than MAX_PARTIAL_DEPTH partials."""
    cycle = _cycle_through(graph, saved)
    if cycle is not None:
        message = f"partials would include each other: {chain(cycle)}"
        raise PartialCycle(message, [{"part": "text", "line": None, "message": message}])
    includers: dict[str, set[str]] = {}
    for name, children in graph.items():
        for child in children:
            includers.setdefault(child, set()).add(name)
    above = list(reversed(_longest(includers, saved)))
    longest = [*above, *_longest(graph, saved)[1:]]
    if len(longest) > MAX_PARTIAL_DEPTH:
        message = (
            f"partials would include each other {len(longest)} deep: {chain(longest)}; "
            f"at most {MAX_PARTIAL_DEPTH} may nest"
        )
        raise PartialsTooDeep(message, [{"part": "text", "line": None, "message": message}])
