"""Event throughput: events/s processed into rendered channel messages, on the local services.

    .venv/bin/python -m bench.events [--quick]

Creates its own PostgreSQL database and RabbitMQ virtual host (removed afterwards), saves
an email and an in-app template and a rule sending both for ``subscription.payment_failed``,
queues N events, and runs the events, email and in-app actors in this process until every
message is final. Emails go to the file outbox (no SMTP peer), so the figure is the fleet's
own cost: rule matching, message rows, template rendering (compiled once, cached) and the
broker round trips. Prints one JSON line with the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import dramatiq
from sqlalchemy import func, select

from bench.env import BenchEnv, in_process_fleet, standalone_fleet, wait_count
from bench.report import Row
from producer.events import EventNotificationService
from shared.broker import get_broker
from shared.channels import TERMINAL_STATUSES
from shared.config import Settings
from shared.db.models import NotificationLog
from shared.db.session import session_scope
from shared.events import rules
from shared.templates import store
from workers.actors import declare_all

#: Events per run.
EVENTS_FULL, EVENTS_QUICK = 1000, 50
#: Worker threads for all three queues together.
THREADS = 16
#: Events per second the fleet should turn into messages (2 rules' worth each).
EVENTS_TARGET_EPS = 500
#: Give up waiting for the fleet after this long, in seconds.
DEADLINE_SECONDS = 600


def _setup(settings: Settings) -> None:
    with session_scope(settings.database_url) as session:
        store.save(
            session,
            store.TemplateInput(
                key="payment-failed",
                channel="email",
                subject="Payment of {{currency amount currency}} failed",
                text="Hi {{name}}, your {{plan}} payment failed.{{#each items}}\n- {{title}}{{/each}}",
                html="<p>Hi {{name}}, your <b>{{plan}}</b> payment failed.</p>",
                sample_data={"name": "A", "plan": "Pro", "amount": 1, "currency": "USD", "items": []},
            ),
            default_locale="en",
        )
        store.save(
            session,
            store.TemplateInput(
                key="payment-failed",
                channel="in_app",
                title="Payment failed",
                message="Your {{plan}} payment of {{currency amount currency}} failed",
                sample_data={"plan": "Pro", "amount": 1, "currency": "USD"},
            ),
            default_locale="en",
        )
        rules.create(
            session,
            rules.RuleInput(
                name="payment failed",
                event_type="subscription.payment_failed",
                channels=["email", "in_app"],
                template_key="payment-failed",
            ),
            default_locale="en",
        )


def run(settings: Settings, events: int) -> dict[str, Any]:
    _setup(settings)
    broker = get_broker(settings)
    declare_all(broker, settings)
    service = EventNotificationService(settings)
    started = time.perf_counter()
    for i in range(events):
        service.process_event(
            "subscription.payment_failed",
            user_id=f"user-{i % 500}",
            data={
                "email": f"user{i}@example.com",
                "name": f"User {i}",
                "plan": "Pro",
                "amount": 10 + i % 90,
                "currency": "EUR",
                "items": [{"title": "seat"}, {"title": "storage"}],
            },
        )
    enqueued = time.perf_counter()
    worker = dramatiq.Worker(
        broker,
        queues={"events", "email", "in_app", "events.DQ", "email.DQ", "in_app.DQ"},
        worker_threads=THREADS,
    )
    consume_start = time.perf_counter()
    worker.start()
    expected = events * 2
    deadline = consume_start + DEADLINE_SECONDS
    final = select(func.count()).where(NotificationLog.status.in_([s.value for s in TERMINAL_STATUSES]))
    try:
        # Timed before the worker stops: its shutdown (threads waking from their 1 s waits)
        # is no part of processing the events.
        done = wait_count(settings, final, expected, deadline, "messages final")
    finally:
        worker.stop()
    processing = done - consume_start
    return {
        "bench": "events",
        "events": events,
        "messages": expected,
        "enqueue_events_per_s": round(events / (enqueued - started), 1),
        "events_per_s": round(events / processing, 1),
        "messages_per_s": round(expected / processing, 1),
        "seconds": round(processing, 2),
        "threads": THREADS,
    }


def measure(env: BenchEnv, *, quick: bool) -> list[Row]:
    """Row 8 of ``make bench``: on the suite's own database and virtual host."""
    with in_process_fleet(env) as settings:
        result = run(settings, EVENTS_QUICK if quick else EVENTS_FULL)
    return [
        Row(
            "8",
            "event processing (events into rendered email + in-app)",
            result["events_per_s"],
            "events/s",
            target=f">= {EVENTS_TARGET_EPS}",
            met=result["events_per_s"] >= EVENTS_TARGET_EPS,
            note=f"{result['messages_per_s']} rendered messages/s, {THREADS} threads, templates cached",
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"{EVENTS_QUICK} events instead of {EVENTS_FULL}"
    )
    args = parser.parse_args(argv)
    with standalone_fleet() as settings:
        result = run(settings, EVENTS_QUICK if args.quick else EVENTS_FULL)
    print(
        f"events: {result['events_per_s']} events/s processed into {result['messages_per_s']} rendered "
        f"messages/s ({result['events']} events, {result['messages']} messages, {result['seconds']} s)",
        file=sys.stderr,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
