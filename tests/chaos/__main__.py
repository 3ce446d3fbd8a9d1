"""``python -m tests.chaos [--quick] [--messages N] [--scenarios 1 5 …] [--output FILE]``"""

from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

from producer.service import NotificationService
from shared.broker import reset_broker
from shared.config import Settings, set_settings
from shared.logging import configure_logging
from tests.chaos.pools import Fleet
from tests.chaos.scenarios import ORDER, QUICK, SCENARIOS, Run, warm_up
from tests.chaos.stack import Stack
from tests.chaos.tally import table

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "chaos.json"
#: Quick runs (CI) keep their figures apart, so they never overwrite a full run's.
QUICK_RESULTS = ROOT / "bench" / "results" / "chaos-quick.json"
#: Messages per scenario and their rate (per second), full and quick.
FULL = {"messages": 10_000, "rate": 250.0, "drain_timeout": 300.0}
QUICK_LOAD = {"messages": 600, "rate": 60.0, "drain_timeout": 90.0}
#: First Prometheus port of the pools (one per channel), away from the defaults.
METRICS_BASE_PORT = 19291


def main() -> int:
    parser = argparse.ArgumentParser(description="fault injection against a real worker fleet")
    parser.add_argument(
        "--quick", action="store_true", help=f"scenarios {', '.join(QUICK)} with a small load"
    )
    parser.add_argument("--messages", type=int, help="messages per scenario")
    parser.add_argument("--scenarios", nargs="+", choices=sorted(SCENARIOS), help="which scenarios to run")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--output",
        type=Path,
        help="where the figures go (default: bench/results/chaos.json, chaos-quick.json with --quick); "
        "give one when running a few scenarios, so a full run's figures are not replaced",
    )
    args = parser.parse_args()
    load = QUICK_LOAD if args.quick else FULL
    wanted = set(args.scenarios or (QUICK if args.quick else SCENARIOS))
    chosen = [key for key in ORDER if key in wanted]
    messages = int(args.messages or load["messages"])
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    configure_logging("ERROR")
    # The producer's refusals while the broker is down are counted in the results; pika's
    # own account of every failed connection attempt would drown the tables.
    logging.getLogger("pika").setLevel(logging.CRITICAL)

    # Stopped from outside (SIGTERM), clean up as on Ctrl-C: the finally below stops the
    # pools and the private services instead of leaving them holding their ports.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stack = Stack(private_broker="2" in chosen)
    fleet: Fleet | None = None
    results = []
    started = time.monotonic()
    try:
        stack.start()
        settings = Settings.from_env(stack.env)
        set_settings(settings)
        logs = Path(tempfile.mkdtemp(prefix="kai-chaos-logs-"))
        fleet = Fleet(stack.env, logs, METRICS_BASE_PORT)
        fleet.start()
        service = NotificationService(settings)
        # A fault timed from the load's start must find the pools consuming, not still starting.
        warm_up(service, stack)
        run = Run(
            stack=stack,
            fleet=fleet,
            service=service,
            messages=messages,
            rate=float(load["rate"]),
            drain_timeout=float(load["drain_timeout"]),
            rng=random.Random(seed),
        )
        for key in chosen:
            result = SCENARIOS[key](run)
            results.append(result)
            print(table([result]), flush=True)
    finally:
        if fleet is not None:
            fleet.stop()
            print(f"worker logs: {logs}")
        reset_broker()
        set_settings(None)
        stack.stop()

    elapsed = time.monotonic() - started
    print()
    print(table(results))
    lost = sum(r.lost for r in results)
    report = {
        "mode": "quick" if args.quick else "full",
        "messages_per_scenario": messages,
        "seed": seed,
        "seconds": round(elapsed, 1),
        "lost": lost,
        "scenarios": [r.as_dict() for r in results],
    }
    results_file = (args.output or (QUICK_RESULTS if args.quick else RESULTS)).resolve()
    results_file.parent.mkdir(parents=True, exist_ok=True)
    results_file.write_text(json.dumps(report, indent=2) + "\n")
    shown = results_file.relative_to(ROOT) if results_file.is_relative_to(ROOT) else results_file
    print(f"\n{len(results)} scenarios in {elapsed:.0f}s; lost {lost}; results in {shown}")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
