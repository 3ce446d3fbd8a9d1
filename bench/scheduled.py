"""Scheduled lateness: how late messages all scheduled for the same second go out.

Every message is sent with the same ``sendAt`` a few seconds ahead (``send_many``, so the
fill is quick), stored ``scheduled`` and not published; at that second the schedulers of the
in-app pool's worker processes publish them (``FOR UPDATE SKIP LOCKED`` shares the rows
between them), and the workers write each inbox row.

Two latenesses, both from the row's ``send_at``: *published*, when a scheduler handed the
message to RabbitMQ, which is the scheduler's precision; and *delivered* (``delivered_at``),
which adds the burst draining through the pool and so is bounded by the pool's throughput
(row 5d): 10,000 messages due at once cannot all be delivered within a second by a pool that
delivers fewer than 10,000 a second.

Triggers in the benchmark's scratch database record the publish. A send a scheduler took
ahead of its time (``SCHEDULER_LOOKAHEAD``) counts when its relay marker, dated at its due
time, is removed: after the broker confirmed it, so a little later than the publish itself.
One taken when already due counts when its row turns from ``scheduled`` to ``queued`` in the
transaction that publishes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import text

from bench.env import BenchEnv
from bench.fleet import SEND_MANY_CHUNK, percentile, send_fields
from bench.pools import Pools, PoolSpec
from producer.service import NotificationService
from shared.channels import Channel
from shared.db.models import utcnow
from shared.db.session import get_engine

PROCESSES = 2
THREADS = 16
#: How far ahead the burst is scheduled: room for the fill (10,000 through ``send_many`` take
#: about a second on a quiet machine), so every message is stored before it is due.
LEAD_S = 8.0
#: The longest the burst may take to be delivered once due.
DRAIN_LIMIT_S = 120.0


_TRIGGER = [
    "CREATE TABLE IF NOT EXISTS bench_published (id text, late_ms double precision)",
    """CREATE OR REPLACE FUNCTION bench_record_published() RETURNS trigger AS $$
       BEGIN
         INSERT INTO bench_published
         VALUES (NEW.id, extract(epoch FROM clock_timestamp() - NEW.send_at) * 1000);
         RETURN NEW;
       END
       $$ LANGUAGE plpgsql""",
    """CREATE OR REPLACE FUNCTION bench_record_released() RETURNS trigger AS $$
       BEGIN
         INSERT INTO bench_published
         VALUES (OLD.id, extract(epoch FROM clock_timestamp() - OLD.created_at) * 1000);
         RETURN OLD;
       END
       $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS bench_published ON notification_logs",
    # Taken when due: ``next_attempt_at`` is set to the moment it was taken. Taken ahead, it
    # keeps the due time (and is counted when released, below).
    """CREATE TRIGGER bench_published AFTER UPDATE ON notification_logs FOR EACH ROW
       WHEN (OLD.status = 'scheduled' AND NEW.status = 'queued'
             AND NEW.next_attempt_at IS DISTINCT FROM OLD.due_at)
       EXECUTE FUNCTION bench_record_published()""",
    "DROP TRIGGER IF EXISTS bench_released ON pending_publishes",
    """CREATE TRIGGER bench_released AFTER DELETE ON pending_publishes FOR EACH ROW
       WHEN (OLD.kind = 'message')
       EXECUTE FUNCTION bench_record_released()""",
    "TRUNCATE bench_published",
]


@dataclass(frozen=True)
class Lateness:
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, values: list[float]) -> Lateness:
        return cls(percentile(values, 0.50), percentile(values, 0.99), max(values, default=0.0))


@dataclass(frozen=True)
class ScheduledResult:
    count: int
    delivered: int
    #: Seconds the fill ended before the burst was due (negative: the fill overran it).
    fill_margin_s: float
    published: Lateness
    delivered_late: Lateness


def measure(env: BenchEnv, pools: Pools, *, count: int) -> ScheduledResult:
    """Schedule ``count`` in-app messages for the same instant and measure their lateness."""
    channel = Channel.IN_APP
    [pool] = pools.start(PoolSpec.of(channel, processes=PROCESSES, threads=THREADS))
    env.reset()
    engine = get_engine(env.database_url)
    with engine.begin() as conn:
        for statement in _TRIGGER:
            conn.execute(text(statement))
    service = NotificationService(env.settings())
    due = utcnow() + timedelta(seconds=LEAD_S)
    item = {"channel": channel.value, **send_fields(channel, ""), "send_at": due}
    with pool.released():
        sent = 0
        while sent < count:
            results = service.send_many([item] * min(SEND_MANY_CHUNK, count - sent))
            sent += sum(1 for r in results if r.get("status") == "scheduled")
        margin = (due - utcnow()).total_seconds()
        wait_s = max(0.0, margin) + DRAIN_LIMIT_S
        delivered = env.wait_done(channel, sent, wait_s)
    with engine.begin() as conn:
        published = [float(r[0]) for r in conn.execute(text("SELECT late_ms FROM bench_published"))]
        conn.execute(text("DROP TRIGGER IF EXISTS bench_published ON notification_logs"))
        conn.execute(text("DROP TRIGGER IF EXISTS bench_released ON pending_publishes"))
        conn.execute(text("DROP TABLE IF EXISTS bench_published"))
        arrived = conn.execute(
            text(
                "SELECT extract(epoch FROM delivered_at - send_at) * 1000 "
                "FROM notification_logs WHERE channel = :c AND status = 'delivered'"
            ),
            {"c": channel.value},
        )
        delivered_late = [float(r[0]) for r in arrived]
    return ScheduledResult(
        count=sent,
        delivered=delivered,
        fill_margin_s=margin,
        published=Lateness.of(published),
        delivered_late=Lateness.of(delivered_late),
    )
