"""``kai-messaging starter [--dry-run] [--json]`` against the real PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cli.main import main
from producer.starter.content import load
from shared.config import Settings

EVERYTHING = 3 * len(load())


def starter(capsys: pytest.CaptureFixture[str], *flags: str) -> dict[str, Any]:
    assert main(["starter", "--json", *flags]) == 0
    answer: dict[str, Any] = json.loads(capsys.readouterr().out)
    return answer


@pytest.mark.usefixtures("settings")
def test_dry_run_lists_then_install_adds_then_nothing_is_left_to_add(
    capsys: pytest.CaptureFixture[str],
) -> None:
    dry = starter(capsys, "--dry-run")
    added = starter(capsys)
    again = starter(capsys)

    assert (dry["dryRun"], dry["counts"]["added"]) == (True, EVERYTHING)
    assert added["counts"] == {"added": EVERYTHING, "unchanged": 0, "kept": 0}
    assert again["counts"] == {"added": 0, "unchanged": EVERYTHING, "kept": 0}
    assert {"kind": "rule", "name": "Starter: order.shipped", "outcome": "added", "reason": None} in added[
        "items"
    ]


def test_the_listing_reads_one_line_per_template_and_rule(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["starter", "--dry-run"]) == 0
    out, err = capsys.readouterr()

    lines = out.splitlines()
    assert len(lines) == EVERYTHING
    assert "would add  template  subscription.payment_failed (email)" in lines
    assert "would add  rule      Starter: subscription.payment_failed" in lines
    assert f"would add {EVERYTHING}, present 0, kept 0" in err
