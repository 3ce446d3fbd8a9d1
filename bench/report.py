"""The benchmark table: one row per figure, printed and written as JSON.

A row carries its absolute figure, the limit it is compared to and their ratio, and the
target it is held against, so the table reads as "how well does the fleet use this machine".
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass
class Row:
    key: str
    what: str
    value: float | None
    unit: str
    #: Name and value of the figure this one is compared with (ratio = value / limit).
    compared_to: str = ""
    limit: float | None = None
    #: The target in words and whether it was met (None: no target for this row).
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.limit:
            return None
        return self.value / self.limit

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def unavailable(key: str, what: str, reason: str) -> Row:
    return Row(key, what, None, "", note=f"not available: {reason}")


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render(rows: list[Row]) -> str:
    header = ("#", "measure", "value", "unit", "compared to", "limit", "ratio", "target", "")
    lines = [header]
    for row in rows:
        ratio = row.ratio
        verdict = {True: "met", False: "MISSED", None: ""}[row.met]
        lines.append(
            (
                row.key,
                row.what,
                _number(row.value),
                row.unit,
                row.compared_to,
                _number(row.limit),
                "-" if ratio is None else f"{ratio:.2f}",
                row.target,
                verdict,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    notes = [f"  {row.key}: {row.note}" for row in rows if row.note]
    if notes:
        out += ["", "notes:", *notes]
    return "\n".join(out)


def write_json(rows: list[Row], path: Path, *, quick: bool, elapsed_s: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "elapsed_s": round(elapsed_s, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average": os.getloadavg(),
        },
        "rows": [row.as_json() for row in rows],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
