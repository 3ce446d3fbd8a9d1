"""Every example of the README runs as written, in document order, against a real
``kai-messaging run`` on the embedded defaults in a directory of its own (its ``./var``), as a
developer who just typed ``make run`` would run them in another terminal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import running
from tests.gateway.server import free_port
from tests.readme import (
    README,
    RUNNABLE,
    Block,
    blocks,
    capture_last_value,
    example_after,
    last_json,
    mismatches,
    steps,
)

#: The repository root, against which a ``run by`` marker names its test file.
ROOT = README.parent
#: The README's own address, replaced by the test instance's.
README_ADDRESS = "127.0.0.1:8000"
#: Blocks the test may leave out (each with its reason in the README): more means examples
#: nobody checks.
MAX_SKIPPED = 5
#: Seconds one block may take.
BLOCK_TIMEOUT = 30

#: Run before each shell block: a request the gateway refuses fails the block, as it would
#: stop a reader.
SHELL_PRELUDE = 'curl() { command curl --fail-with-body --max-time 10 "$@"; }\n'


def runnable() -> list[Block]:
    return [b for b in blocks(README) if b.language in RUNNABLE]


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[running.Running]:
    workdir = tmp_path_factory.mktemp("readme")
    # The README's commands name the project's .venv, as in a checkout.
    (workdir / ".venv").symlink_to(Path(sys.prefix))
    started = running.start(workdir, "--port", str(free_port()))
    try:
        yield started
    finally:
        started.stop()


def test_every_skipped_block_says_why() -> None:
    skipped = [b for b in runnable() if b.skip is not None]
    assert [b.line for b in skipped if not b.skip] == [], "a readme-test skip without a reason"
    assert len(skipped) <= MAX_SKIPPED, [f"line {b.line}: {b.skip}" for b in skipped]


def test_every_block_run_by_its_own_test_is_fetched_there() -> None:
    """A block marked ``run by`` a test file is one that file fetches with example_after (so
    it runs as written there), not an example nobody checks."""
    unclaimed = []
    for block in runnable():
        if block.run_by is None:
            continue
        source = (ROOT / block.run_by).read_text()
        sentences = re.findall(r'example_after\(\s*"([^"]+)"', source)
        if not any(example_after(s, block.language).strip() == block.code.strip() for s in sentences):
            unclaimed.append(f"line {block.line}: not fetched by {block.run_by}")
    assert unclaimed == []
    assert any(b.run_by for b in runnable())  # the check above looked at something


def test_a_skip_without_a_reason_and_a_wrong_answer_are_seen(tmp_path: Path) -> None:
    """The checks above are not vacuous: a bare skip marker reads as a skip without a reason,
    and an answer that differs from the one shown is reported."""
    readme = tmp_path / "README.md"
    readme.write_text(
        "<!-- readme-test: skip -->\n```sh\nmake run\n```\n\n"
        '```sh\ncurl -s x\n# {"id": "…", "status": "queued"}\n```\n'
    )

    skipped, checked = blocks(readme)

    assert skipped.skip == ""
    (step,) = steps(checked.code)
    assert step.expected is not None
    assert mismatches(step.expected, {"id": "1", "status": "queued"}) == []
    assert mismatches(step.expected, {"id": "1", "status": "failed"}) == [
        "'status' is 'failed', not 'queued'"
    ]
    assert mismatches(step.expected, {"status": "queued"}) == ["no 'id'"]


def run_block(block: Block, instance: running.Running) -> list[str]:
    """Run ``block``; the problems found (a failing command, an answer not as shown)."""
    outputs = instance.workdir / ".readme-answers"
    outputs.mkdir(exist_ok=True)
    parts = steps(block.code.replace(README_ADDRESS, f"127.0.0.1:{instance.port}"))
    env = running.embedded_env(KEY=instance.key)
    script = []
    answers: list[tuple[Path, str]] = []
    for number, step in enumerate(parts):
        target = outputs / f"{block.line}-{number}"
        if step.expected is None:
            script.append(step.code)
        elif block.language == "python":
            script.append(capture_last_value(step.code, str(target)))
            answers.append((target, step.expected))
        else:
            script.append(f'{{\n{step.code}\n}} > "{target}"\ncat "{target}"\n')
            answers.append((target, step.expected))
    if block.language == "python":
        argv = [sys.executable, "-c", "\n".join(script)]
    else:
        argv = ["bash", "-euo", "pipefail", "-c", SHELL_PRELUDE + "\n".join(script)]
    result = subprocess.run(
        argv, cwd=instance.workdir, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT
    )
    if result.returncode != 0:
        return [f"exit code {result.returncode}: {(result.stdout + result.stderr)[-1500:]}"]
    problems = []
    for target, expected in answers:
        actual = last_json(target.read_text()) if target.exists() else None
        problems += [f"{expected}: {p} in {actual!r}"[:500] for p in mismatches(expected, actual)]
    return problems


def test_every_example_runs_as_written(instance: running.Running) -> None:
    """Every sh, bash and python block exits 0 in document order, and shows the answers it
    says it shows."""
    failures = {}
    for block in runnable():
        if block.skip is None and block.run_by is None:
            problems = run_block(block, instance)
            if problems:
                failures[f"README.md line {block.line} ({block.language})"] = problems
    assert failures == {}, "\n".join(f"{where}: {problems}" for where, problems in failures.items())


def test_the_instance_is_the_embedded_default(instance: running.Running) -> None:
    """The examples ran against what `make run` starts: SQLite under ./var, no service URL."""
    assert (instance.var / "kai-messaging.db").exists()
    assert not {"DATABASE_URL", "BROKER_URL", "REDIS_URL"} & set(running.embedded_env())
    assert os.path.samefile(instance.workdir / ".venv", sys.prefix)
