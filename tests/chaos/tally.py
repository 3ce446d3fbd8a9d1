"""Where every accepted message ended, read from ``notification_logs`` and the peers."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from shared.channels import Channel

TERMINAL = {"sent", "delivered", "failed", "skipped"}
#: Seconds between looks at the database while waiting for the fleet to drain.
POLL = 0.5


def plain_url(database_url: str) -> str:
    return database_url.replace("postgresql+psycopg://", "postgresql://")


def statuses(database_url: str, ids: list[str]) -> dict[str, tuple[str, str | None]]:
    return {message_id: (status, code) for message_id, (status, code, _) in _rows(database_url, ids).items()}


def _rows(database_url: str, ids: list[str]) -> dict[str, tuple[str, str | None, str | None]]:
    with psycopg.connect(plain_url(database_url)) as conn:
        rows = conn.execute(
            "SELECT id, status, error_code, last_error FROM notification_logs WHERE id = ANY(%s)", (ids,)
        ).fetchall()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def wait_drained(database_url: str, ids: list[str], timeout: float) -> float:
    """Seconds until every id is terminal (or ``timeout``, if some never are)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        rows = statuses(database_url, ids)
        if len(rows) == len(ids) and all(status in TERMINAL for status, _ in rows.values()):
            break
        time.sleep(POLL)
    return time.monotonic() - started


@dataclass
class Result:
    scenario: str
    accepted: int
    refused_then_retried: dict[str, int]
    delivered: int
    failed: dict[str, int]
    skipped: int
    lost: int
    not_terminal: dict[str, int]
    missing_at_sink: int
    duplicates_at_sink: int
    #: Copies beyond the first, per channel (webhooks: by webhook-id; email: by Message-ID;
    #: SMS: by body), the webhook receiver's programmed refusals taken out.
    duplicates_by_channel: dict[str, int]
    drain_seconds: float
    #: One recorded error per failure code, so a table says why and not only how many.
    failure_samples: dict[str, str] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def tally(
    scenario: str,
    database_url: str,
    ids: dict[str, Channel],
    copies: dict[str, int],
    *,
    refused: dict[str, int],
    refusals_served: int,
    drain_seconds: float,
    sinks_reachable: bool = True,
) -> Result:
    """``copies``: per email/SMS/webhook id, how many times its peer got it; a peer's refusals
    (answers it was told to give) are attempts, not duplicates."""
    rows = _rows(database_url, list(ids))
    failed: Counter[str] = Counter()
    samples: dict[str, str] = {}
    not_terminal: Counter[str] = Counter()
    delivered = skipped = missing = 0
    for message_id in ids:
        status, code, error = rows.get(message_id, ("missing", None, None))
        if status in ("sent", "delivered"):
            delivered += 1
            if sinks_reachable and message_id in copies and copies[message_id] == 0:
                missing += 1
        elif status == "failed":
            failed[code or "unknown"] += 1
            samples.setdefault(code or "unknown", (error or "")[:200])
        elif status == "skipped":
            skipped += 1
        else:
            not_terminal[status] += 1
    extra: Counter[str] = Counter()
    for message_id, count in copies.items():
        extra[ids[message_id].value] += max(0, count - 1)
    if extra["webhook"]:
        extra["webhook"] = max(0, extra["webhook"] - refusals_served)
    return Result(
        scenario=scenario,
        accepted=len(ids),
        refused_then_retried=dict(refused),
        delivered=delivered,
        failed=dict(failed),
        skipped=skipped,
        lost=sum(not_terminal.values()) + missing,
        not_terminal=dict(not_terminal),
        missing_at_sink=missing,
        duplicates_at_sink=sum(extra.values()),
        duplicates_by_channel={channel: n for channel, n in sorted(extra.items()) if n},
        drain_seconds=round(drain_seconds, 1),
        failure_samples=samples,
    )


def table(results: list[Result]) -> str:
    head = (
        f"{'scenario':<28}{'accepted':>9}{'deliv.':>8}{'failed':>8}"
        f"{'skip':>6}{'lost':>6}{'dups':>6}{'drain s':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.scenario:<28}{r.accepted:>9}{r.delivered:>8}{sum(r.failed.values()):>8}"
            f"{r.skipped:>6}{r.lost:>6}{r.duplicates_at_sink:>6}{r.drain_seconds:>9}"
        )
        if r.failed:
            lines.append(
                "    failed by reason: " + ", ".join(f"{k}={v}" for k, v in sorted(r.failed.items()))
            )
            lines.extend(f"      e.g. {code}: {text}" for code, text in sorted(r.failure_samples.items()))
        if r.duplicates_by_channel:
            by_channel = ", ".join(f"{k}={v}" for k, v in r.duplicates_by_channel.items())
            lines.append("    duplicates at the sink: " + by_channel)
        if r.refused_then_retried:
            refusals = ", ".join(f"{k}={v}" for k, v in sorted(r.refused_then_retried.items()))
            lines.append("    refused at enqueue (caller retried): " + refusals)
        if r.not_terminal:
            lines.append("    NOT TERMINAL: " + ", ".join(f"{k}={v}" for k, v in r.not_terminal.items()))
        if r.notes:
            lines.append("    " + ", ".join(f"{k}={v}" for k, v in r.notes.items()))
    return "\n".join(lines)
