"""Digest window closing: events folded into digests, then the windows closing, on the local services.

    .venv/bin/python -m bench.digests [--quick]

Creates its own PostgreSQL database and RabbitMQ virtual host (removed afterwards), saves an
in-app template and a rule digesting ``order.shipped`` per user over an hour, and runs the
events and in-app actors in this process. First N events over U users are queued and
folded into U open digests (the events/s of that phase); then every window is made due at
once (the bench moves ``closes_at`` to now, so it need not wait an hour) and the time until
all U digests are delivered is the closing figure: the closers claiming the due buckets,
rendering each with its events and the in-app pipeline delivering them. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import dramatiq
from sqlalchemy import func, select, update

from bench.env import BenchEnv, in_process_fleet, standalone_fleet, wait_count
from bench.report import Row
from producer.events import EventNotificationService
from shared.broker import get_broker
from shared.config import Settings
from shared.db.models import DigestBucket, EventLog, NotificationLog, utcnow
from shared.db.rls import system_scope
from shared.db.session import session_scope
from shared.events import rules
from shared.templates import store
from workers.actors import declare_all

#: Events and users per run: ten events in each user's digest.
EVENTS_FULL, USERS_FULL = 5_000, 500
EVENTS_QUICK, USERS_QUICK = 500, 50
#: Worker threads for the events and in-app queues together.
THREADS = 16
#: Give up waiting for the fleet after this long, in seconds.
DEADLINE_SECONDS = 600


def _setup(settings: Settings) -> None:
    with session_scope(settings.database_url) as session:
        store.save(
            session,
            store.TemplateInput(
                key="orders-shipped",
                channel="in_app",
                title="{{count}} orders shipped",
                message="{{#each events}}{{data.orderId}} {{/each}}",
                sample_data={"count": 1, "events": [{"data": {"orderId": "A1"}}]},
            ),
            default_locale="en",
        )
        rules.create(
            session,
            rules.RuleInput.model_validate(
                {
                    "name": "shipping digest",
                    "eventType": "order.shipped",
                    "channels": ["in_app"],
                    "templateKey": "orders-shipped",
                    "digest": {"window": "1h"},
                }
            ),
            default_locale="en",
        )


def run(settings: Settings, events: int, users: int) -> dict[str, Any]:
    _setup(settings)
    broker = get_broker(settings)
    declare_all(broker, settings)
    service = EventNotificationService(settings)
    for i in range(events):
        service.process_event("order.shipped", user_id=f"user-{i % users}", data={"orderId": f"o-{i}"})
    worker = dramatiq.Worker(
        broker, queues={"events", "in_app", "events.DQ", "in_app.DQ"}, worker_threads=THREADS
    )
    started = time.perf_counter()
    worker.start()
    deadline = started + DEADLINE_SECONDS
    try:
        processed = select(func.count()).where(EventLog.status == "processed")
        folded = wait_count(settings, processed, events, deadline, "events folded")
        with system_scope(settings.database_url) as session:
            session.execute(update(DigestBucket).values(closes_at=utcnow()))
        closing = time.perf_counter()
        delivered = select(func.count()).where(NotificationLog.status == "delivered")
        done = wait_count(settings, delivered, users, deadline, "digests delivered")
    finally:
        worker.stop()
    return {
        "bench": "digests",
        "events": events,
        "users": users,
        "fold_events_per_s": round(events / (folded - started), 1),
        "close_seconds": round(done - closing, 3),
        "close_digests_per_s": round(users / (done - closing), 1),
        "close_events_per_s": round(events / (done - closing), 1),
        "threads": THREADS,
    }


def measure(env: BenchEnv, *, quick: bool) -> list[Row]:
    """Row 12 of ``make bench``: on the suite's own database and virtual host."""
    events, users = (EVENTS_QUICK, USERS_QUICK) if quick else (EVENTS_FULL, USERS_FULL)
    with in_process_fleet(env) as settings:
        result = run(settings, events, users)
    return [
        Row(
            "12",
            f"digest window closing ({events:,} events over {users:,} users)",
            result["close_events_per_s"],
            "events/s",
            note=(
                f"{users:,} digests delivered {result['close_seconds']} s after their windows closed; "
                f"folding {result['fold_events_per_s']} events/s"
            ),
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"{EVENTS_QUICK} events over {USERS_QUICK} users"
    )
    args = parser.parse_args(argv)
    events, users = (EVENTS_QUICK, USERS_QUICK) if args.quick else (EVENTS_FULL, USERS_FULL)
    with standalone_fleet() as settings:
        result = run(settings, events, users)
    print(
        f"digests: {result['events']} events folded at {result['fold_events_per_s']} events/s; "
        f"{result['users']} digests delivered {result['close_seconds']} s after their windows closed "
        f"({result['close_events_per_s']} events/s, {result['close_digests_per_s']} digests/s)",
        file=sys.stderr,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
