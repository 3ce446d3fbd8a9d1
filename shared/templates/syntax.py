"""The whitelist a template must pass before pybars3 ever compiles it.

pybars3 compiles a template into Python source and executes it, and some of its syntax
(path literals such as ``{{['+exit(1)+']}}``) is pasted into that source unchecked: it is
not a sandbox. So every ``{{…}}`` is parsed here first and only these constructs pass:

- ``{{path}}`` / ``{{{path}}}`` / ``{{&path}}`` where a path is ``name``, ``a.b.c``,
  ``this``, ``../name``, ``@index``/``@key``/``@first``/``@last``/``@root``;
- ``{{helper arg… key=arg…}}`` for a known helper, arguments being paths or literals
  (plain strings, numbers, true/false/null);
- ``{{#if x}} {{#unless x}} {{#each x}} {{#with x}}`` with ``{{else}}`` and their closing tag;
- ``{{> partial}}`` (optionally with one context path and ``key=arg`` pairs) for a known
  partial, and ``{{! comments }}``.

Names may not start with an underscore (no ``__class__``), brackets, sub-expressions, raw
blocks and string literals with quotes, backslashes or braces are refused, and so are
pybars' internal helper names, control characters (NUL…), and sources too large or too
deeply nested to compile cheaply (pybars' parser costs about a millisecond per tag).
:func:`check` returns the source rewritten for its part: in plain-text parts (text, SMS,
titles…) ``{{x}}`` becomes ``{{&x}}``, because HTML escaping belongs to HTML parts only.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

#: Block helpers and the number of positional arguments each takes.
BLOCK_HELPERS = {"if": 1, "unless": 1, "each": 1, "with": 1}
#: Names pybars resolves to its own machinery rather than to the data.
RESERVED_NAMES = frozenset({"helperMissing", "blockHelperMissing"})
#: Longest template part, in characters (a large HTML email is under 100 KB).
MAX_SOURCE_CHARS = 128 * 1024
#: Most ``{{…}}`` tags in one part: compiling costs about 1 ms of CPU per tag.
MAX_TAGS = 1000
#: Deepest nesting of block helpers; pybars' recursive parser overflows the stack at about 65.
MAX_BLOCK_DEPTH = 24

_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

_NAME = r"[A-Za-z][A-Za-z0-9_-]*"
_SEGMENT = rf"(?:{_NAME}|\d+)"
_PATH_RE = re.compile(
    rf"^(?:\.\./)*(?:@(?:index|key|first|last|root)|this|{_NAME})(?:\.{_SEGMENT})*$|^(?:\.\./)*this$"
)
_STRING_RE = re.compile(r"""^(?:"[^"'\\{}\[\]\r\n]*"|'[^"'\\{}\[\]\r\n]*')$""")
_NUMBER_RE = re.compile(r"^-?\d+(?:\.\d+)?$")
_KEYWORD_RE = re.compile(rf"^({_NAME})=(.+)$")
_LITERALS = {"true", "false", "null", "undefined"}
_TOKEN_RE = re.compile(r"""\s*("[^"]*"|'[^']*'|[^\s"']+(?:=(?:"[^"]*"|'[^']*'))?)""")


@dataclass(frozen=True)
class Problem:
    line: int
    message: str


class TemplateSyntaxError(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(f"line {problem.line}: {problem.message}")
        self.problem = problem


@dataclass(frozen=True)
class Usage:
    """What a template refers to: checked against the known helpers and partials."""

    helpers: frozenset[str]
    partials: frozenset[str]


def _check_length_and_characters(source: str) -> None:
    if len(source) > MAX_SOURCE_CHARS:
        raise TemplateSyntaxError(Problem(1, f"over {MAX_SOURCE_CHARS} characters"))
    control = _CONTROL_RE.search(source)
    if control is not None:
        line = source.count("\n", 0, control.start()) + 1
        raise TemplateSyntaxError(
            Problem(line, f"control character U+{ord(control.group()):04X} is not allowed in templates")
        )


def _tokens(inner: str, line: int) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(inner):
        match = _TOKEN_RE.match(inner, position)
        if match is None or not match.group(1):
            if inner[position:].strip():
                raise TemplateSyntaxError(Problem(line, f"cannot read {inner[position:].strip()!r}"))
            break
        tokens.append(match.group(1))
        position = match.end()
    return tokens


def _check_argument(token: str, line: int) -> None:
    value = token
    keyword = _KEYWORD_RE.match(token)
    if keyword is not None:
        value = keyword.group(2)
    if value in _LITERALS or _NUMBER_RE.match(value) or _STRING_RE.match(value):
        return
    if value.startswith(("(", "[")) or "[" in value:
        raise TemplateSyntaxError(
            Problem(line, f"{value!r}: brackets and sub-expressions are not allowed in templates")
        )
    if value.startswith(("'", '"')):
        raise TemplateSyntaxError(
            Problem(line, f"{value!r}: string literals may not contain quotes, backslashes or braces")
        )
    if not _PATH_RE.match(value):
        raise TemplateSyntaxError(Problem(line, f"{value!r} is not a variable name, path or literal"))


def _check_path(token: str, line: int) -> None:
    if not _PATH_RE.match(token):
        _check_argument(token, line)  # raises with the precise reason for brackets/literals
        raise TemplateSyntaxError(Problem(line, f"{token!r} is not a variable name or path"))


def _mustaches(source: str) -> list[tuple[int, int, str]]:
    """``(start, end, inner)`` of every ``{{…}}`` (``inner`` keeps its opening sigil)."""
    found: list[tuple[int, int, str]] = []
    position = 0
    while True:
        start = source.find("{{", position)
        if start < 0:
            return found
        line = source.count("\n", 0, start) + 1
        if source.startswith("{{{{", start):
            raise TemplateSyntaxError(Problem(line, "raw blocks ({{{{…}}}}) are not allowed"))
        if source.startswith("{{!", start):
            # A comment ends at the first "}}", even in the {{!-- … --}} form, because that is
            # where pybars ends it: reading further would hide the rest from this check.
            end = source.find("}}", start) + 2
            if end < 2:
                raise TemplateSyntaxError(Problem(line, "unclosed comment"))
            found.append((start, end, source[start + 2 : end - 2]))
            position = end
            continue
        triple = source.startswith("{{{", start)
        closer = "}}}" if triple else "}}"
        end = source.find(closer, start)
        if end < 0:
            raise TemplateSyntaxError(Problem(line, "unclosed {{"))
        inner = source[start + 2 : end + (1 if triple else 0)]
        if "{{" in inner:
            raise TemplateSyntaxError(Problem(line, "{{ inside another {{ … }}"))
        found.append((start, end + len(closer), inner))
        position = end + len(closer)


def check(
    source: str,
    *,
    html: bool,
    helpers: Collection[str],
    partials: Collection[str] | None,
) -> tuple[str, Usage]:
    """Validate ``source``; return it ready for pybars (escaping fixed for the part) and what
    it uses. ``partials=None`` skips the partial-existence check (the caller checks later).
    Raises :class:`TemplateSyntaxError` naming the line and the reason."""
    _check_length_and_characters(source)
    used_helpers: set[str] = set()
    used_partials: set[str] = set()
    stack: list[tuple[str, int]] = []
    pieces: list[str] = []
    position = 0
    tags = _mustaches(source)
    if len(tags) > MAX_TAGS:
        line = source.count("\n", 0, tags[MAX_TAGS][0]) + 1
        raise TemplateSyntaxError(Problem(line, f"more than {MAX_TAGS} {{{{…}}}} tags in one part"))
    for start, end, raw_inner in tags:
        line = source.count("\n", 0, start) + 1
        pieces.append(source[position:start])
        position = end
        original = source[start:end]
        if raw_inner.startswith("!"):
            pieces.append(original)
            continue
        inner = raw_inner
        triple = inner.startswith("{") and inner.endswith("}")
        if triple:
            inner = inner[1:-1]
        left_tilde = inner.startswith("~")
        right_tilde = inner.endswith("~") and len(inner) > 1
        inner = inner[1 if left_tilde else 0 : len(inner) - (1 if right_tilde else 0)].strip()
        if not inner:
            raise TemplateSyntaxError(Problem(line, "empty {{ }}"))
        if any(c in inner for c in "[]()"):
            raise TemplateSyntaxError(
                Problem(line, "brackets and sub-expressions (path literals) are not allowed in templates")
            )
        sigil = inner[0]
        if sigil == "#" and not triple:
            tokens = _tokens(inner[1:], line)
            if not tokens:
                raise TemplateSyntaxError(Problem(line, "block without a name"))
            name, args = tokens[0], tokens[1:]
            if name not in BLOCK_HELPERS:
                raise TemplateSyntaxError(
                    Problem(line, f"unknown block helper {name!r} (allowed: {', '.join(BLOCK_HELPERS)})")
                )
            positional = [a for a in args if not _KEYWORD_RE.match(a)]
            if len(positional) != BLOCK_HELPERS[name]:
                raise TemplateSyntaxError(Problem(line, f"#{name} takes exactly one argument"))
            for arg in args:
                _check_argument(arg, line)
            stack.append((name, line))
            if len(stack) > MAX_BLOCK_DEPTH:
                raise TemplateSyntaxError(Problem(line, f"blocks nested deeper than {MAX_BLOCK_DEPTH}"))
            pieces.append(original)
        elif sigil == "/" and not triple:
            name = inner[1:].strip()
            if not stack:
                raise TemplateSyntaxError(Problem(line, f"{{{{/{name}}}}} closes no open block"))
            open_name, open_line = stack.pop()
            if name != open_name:
                raise TemplateSyntaxError(
                    Problem(line, f"{{{{/{name}}}}} does not close {{{{#{open_name}}}}} of line {open_line}")
                )
            pieces.append(original)
        elif (inner == "else" or inner == "^") and not triple:
            if not stack:
                raise TemplateSyntaxError(Problem(line, "{{else}} outside a block"))
            pieces.append(original)
        elif sigil == "^" and not triple:
            raise TemplateSyntaxError(Problem(line, "inverted sections are not allowed; use {{#unless}}"))
        elif sigil == ">" and not triple:
            tokens = _tokens(inner[1:], line)
            if not tokens or not re.match(rf"^{_NAME}$", tokens[0]):
                raise TemplateSyntaxError(Problem(line, "a partial is named by a plain name: {{> header}}"))
            if partials is not None and tokens[0] not in partials:
                raise TemplateSyntaxError(Problem(line, f"unknown partial {tokens[0]!r}"))
            positional = [a for a in tokens[1:] if not _KEYWORD_RE.match(a)]
            if len(positional) > 1:
                raise TemplateSyntaxError(Problem(line, "a partial takes at most one context argument"))
            for arg in tokens[1:]:
                _check_argument(arg, line)
            used_partials.add(tokens[0])
            pieces.append(original)
        else:
            raw = triple
            if sigil == "&" and not triple:
                raw, inner = True, inner[1:].strip()
            tokens = _tokens(inner, line)
            if not tokens:
                raise TemplateSyntaxError(Problem(line, "empty {{ }}"))
            head, args = tokens[0], tokens[1:]
            if head in RESERVED_NAMES:
                raise TemplateSyntaxError(Problem(line, f"{head!r} is reserved"))
            if head in BLOCK_HELPERS:
                raise TemplateSyntaxError(
                    Problem(line, f"{head!r} is a block helper: write {{{{#{head} …}}}}")
                )
            if args:
                if head not in helpers:
                    raise TemplateSyntaxError(Problem(line, f"unknown helper {head!r}"))
                for arg in args:
                    _check_argument(arg, line)
            else:
                _check_path(head, line)
            if head in helpers:
                used_helpers.add(head)
            escaped = html and not raw
            body = " ".join(tokens)
            opening = "{{" + ("~" if left_tilde else "")
            closing = ("~" if right_tilde else "") + "}}"
            pieces.append(f"{opening}{body}{closing}" if escaped else f"{opening}&{body}{closing}")
    if stack:
        name, line = stack[-1]
        raise TemplateSyntaxError(Problem(line, f"{{{{#{name}}}}} is never closed"))
    pieces.append(source[position:])
    return "".join(pieces), Usage(frozenset(used_helpers), frozenset(used_partials))
