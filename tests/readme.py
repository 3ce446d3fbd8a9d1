"""The README's examples, found by the paragraph that introduces them (so tests run them as
written), and every runnable block of it in document order with the answers it shows.

A block the README test cannot run carries a marker in the README source right before its
fence, with the reason: ``<!-- readme-test: skip (starts the server this test already runs) -->``.
A block that needs more than the embedded instance (a provider's peer, settings of its own)
names the test that runs it instead: ``<!-- readme-test: run by tests/test_readme_examples.py
(why) -->``; that file must fetch the block with :func:`example_after`.

An expected answer is a comment after a command, ``# {"id": "…", "status": "queued"}``
(continued on following ``#`` lines): every key it names must be in the answer, and every
plain value (a string without "…", a number, true, false, null) must be the answer's.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"

#: The languages the README test runs.
RUNNABLE = frozenset({"sh", "bash", "python"})

_MARKER = re.compile(r"^<!--\s*readme-test:\s*(?P<what>.*?)\s*-->$")
_SKIP = re.compile(r"^skip\s*(?:\((?P<reason>.*)\))?$")
_RUN_BY = re.compile(r"^run by (?P<test>tests/\S+\.py)\s*(?:\((?P<reason>.*)\))?$")
_FENCE = re.compile(r"^```(?P<language>[\w+-]*)\s*$")
#: `"key": value` in an expected answer; the value is kept only if it is plain.
_PAIR = re.compile(
    r'"(?P<key>[\w.-]+)"\s*:\s*(?:(?P<value>"[^"]*"|-?\d+(?:\.\d+)?|true|false|null)(?=\s*[,}\]]))?'
)


def example_after(sentence: str, language: str = "python") -> str:
    """The first fenced ``language`` block after the text ``sentence``."""
    text = README.read_text()
    start = text.index(sentence)
    block = re.search(rf"```{language}\n(.*?)```", text[start:], re.DOTALL)
    assert block is not None, f"no {language} example after {sentence!r}"
    return block.group(1)


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    #: The line of the opening fence (1-based), to name the block in a failure.
    line: int
    #: None: the block runs. Otherwise the marker's reason ("" if it gave none).
    skip: str | None = None
    #: The test file that runs the block instead, with settings and peers of its own.
    run_by: str | None = None


def blocks(path: Path = README) -> list[Block]:
    """Every fenced block of ``path``, in order."""
    found: list[Block] = []
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and not lines[index].startswith("```"):
            body.append(lines[index])
            index += 1
        index += 1
        skip, run_by = _marker(lines, start)
        found.append(Block(fence["language"], "\n".join(body) + "\n", start + 1, skip, run_by))
    return found


def _marker(lines: list[str], fence: int) -> tuple[str | None, str | None]:
    """The skip reason, or the test that runs the block, from the marker before ``fence``."""
    previous = fence - 1
    while previous >= 0 and not lines[previous].strip():
        previous -= 1
    marker = _MARKER.match(lines[previous].strip()) if previous >= 0 else None
    if marker is None:
        return None, None
    run_by = _RUN_BY.match(marker["what"])
    if run_by is not None:
        return None, run_by["test"]
    skip = _SKIP.match(marker["what"])
    if skip is None:
        raise ValueError(f"README line {previous + 1}: unknown readme-test marker {marker['what']!r}")
    return (skip["reason"] or "").strip(), None


@dataclass(frozen=True)
class Step:
    """Code up to an expected answer (or the end of the block), and that answer."""

    code: str
    expected: str | None


def steps(code: str) -> list[Step]:
    """``code`` cut after each expected-answer comment."""
    out: list[Step] = []
    pending: list[str] = []
    expected: list[str] = []
    for line in code.splitlines():
        stripped = line.strip()
        starts_answer = stripped.startswith(("# {", "# [")) and not expected
        continues_answer = bool(expected) and stripped.startswith("#")
        if starts_answer or continues_answer:
            expected.append(stripped[1:].strip())
            continue
        if expected:
            out.append(Step("\n".join(pending) + "\n", " ".join(expected)))
            pending, expected = [], []
        pending.append(line)
    if expected:
        out.append(Step("\n".join(pending) + "\n", " ".join(expected)))
    elif any(line.strip() for line in pending):
        out.append(Step("\n".join(pending) + "\n", None))
    return out


_PLAIN_ABSENT = object()


def expectations(answer: str) -> list[tuple[str, Any]]:
    """The keys an expected answer names, each with its plain value (or a marker meaning any
    value)."""
    pairs: list[tuple[str, Any]] = []
    for match in _PAIR.finditer(answer):
        raw = match["value"]
        value: Any = _PLAIN_ABSENT if raw is None or "…" in raw else json.loads(raw)
        pairs.append((match["key"], value))
    return pairs


def _entries(value: Any, key: str) -> list[Any]:
    found: list[Any] = []
    if isinstance(value, dict):
        if key in value:
            found.append(value[key])
        for item in value.values():
            found.extend(_entries(item, key))
    elif isinstance(value, list):
        for item in value:
            found.extend(_entries(item, key))
    return found


def mismatches(answer: str, actual: Any) -> list[str]:
    """What ``actual`` lacks of the expected ``answer`` (empty: it matches)."""
    problems = []
    for key, value in expectations(answer):
        entries = _entries(actual, key)
        if not entries:
            problems.append(f"no {key!r}")
        elif value is not _PLAIN_ABSENT and value not in entries:
            problems.append(f"{key!r} is {entries[0]!r}, not {value!r}")
    return problems


def last_json(output: str) -> Any:
    """The last JSON document in ``output`` (a command may print several)."""
    decoder = json.JSONDecoder()
    last: Any = None
    position = 0
    while position < len(output):
        start = min(
            (i for i in (output.find("{", position), output.find("[", position)) if i >= 0), default=-1
        )
        if start < 0:
            break
        try:
            last, position = decoder.raw_decode(output, start)
        except json.JSONDecodeError:
            position = start + 1
    return last


def capture_last_value(code: str, target: str) -> str:
    """``code`` with its last statement's value written as JSON to the file ``target``: an
    expression's value, or the name an assignment sets."""
    tree = ast.parse(code)
    if not tree.body:
        return code
    last = tree.body[-1]
    lines = code.splitlines()
    head = "\n".join(lines[: last.lineno - 1])
    tail = "\n".join(lines[last.lineno - 1 :])
    write = (
        "import json as _json, pathlib as _pathlib\n"
        "_pathlib.Path({!r}).write_text(_json.dumps({}, default=str))\n"
    )
    if isinstance(last, ast.Expr):
        return f"{head}\n_readme_value = (\n{tail}\n)\n" + write.format(target, "_readme_value")
    if isinstance(last, ast.Assign) and len(last.targets) == 1 and isinstance(last.targets[0], ast.Name):
        return f"{code}\n" + write.format(target, last.targets[0].id)
    raise ValueError("an expected answer must follow an expression or an assignment to a name")
