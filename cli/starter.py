"""``kai-messaging starter [--dry-run] [--json]``: add the starter set of templates and rules
(:mod:`producer.starter`) for every built-in event type. What the database already has is
left alone and listed as kept or unchanged."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from shared.config import get_settings

#: How each outcome reads in the listing, per mode.
_LABELS = {
    (False, "added"): "added",
    (True, "added"): "would add",
    (False, "unchanged"): "present",
    (True, "unchanged"): "present",
    (False, "kept"): "kept",
    (True, "kept"): "kept",
}


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "starter", help="add the starter templates and rules for every built-in event type"
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be added; change nothing")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_starter)


def _starter(args: argparse.Namespace) -> int:
    from producer.starter import install_starter

    report = install_starter(get_settings(), dry_run=args.dry_run)
    if args.json:
        items = [dataclasses.asdict(item) for item in report.items]
        print(json.dumps({"dryRun": report.dry_run, "items": items, "counts": report.counts()}, indent=2))
        return 0
    for item in report.items:
        label = _LABELS[(report.dry_run, item.outcome)]
        reason = f"  ({item.reason})" if item.reason else ""
        print(f"{label:<10} {item.kind:<9} {item.name}{reason}")
    counts = report.counts()
    verb = "would add" if report.dry_run else "added"
    print(
        f"kai-messaging: starter set: {verb} {counts['added']}, present {counts['unchanged']}, "
        f"kept {counts['kept']}",
        file=sys.stderr,
    )
    return 0
