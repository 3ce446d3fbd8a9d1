"""Retry precision: how late a retried webhook reaches the receiver after the time its
``notification_logs`` row said it was due (``next_attempt_at``), through the broker's delay
queue and through the database (parked, published by the scheduler).

The receiver answers 503 to each message's first request and notes when the retry arrives.
The due time is overwritten once the retry succeeds, so a trigger in the benchmark's own
scratch database copies every row's ``next_attempt_at`` as it is set.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text

from bench.endtoend import DRAIN_LIMIT_S
from bench.env import BenchEnv
from bench.fleet import percentile, produce, send_fields, webhook_pool
from bench.pools import Pools
from bench.procs import http_peer, peer_stats
from shared.channels import Channel
from shared.db.session import get_engine

#: Sending pace: well under what one 16-thread process delivers (about 80/s, row 6.1), each
#: message counting twice (the 503, then the retry), so the row measures the retry timer and
#: not a backlog: at 100/s the queue grew and retries measured about 5 s "late".
SEND_RATE = 20.0
POOL_THREADS = 16

_TRIGGER = [
    "CREATE TABLE IF NOT EXISTS bench_due (id text, attempt integer, due timestamptz)",
    """CREATE OR REPLACE FUNCTION bench_record_due() RETURNS trigger AS $$
       BEGIN INSERT INTO bench_due VALUES (NEW.id, NEW.attempts, NEW.next_attempt_at); RETURN NEW; END
       $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS bench_due ON notification_logs",
    """CREATE TRIGGER bench_due AFTER UPDATE ON notification_logs FOR EACH ROW
       WHEN (OLD.status = 'processing' AND NEW.status = 'queued')
       EXECUTE FUNCTION bench_record_due()""",
    "TRUNCATE bench_due",
]


@dataclass(frozen=True)
class RetryResult:
    path: str
    retried: int
    p50_late_ms: float
    p99_late_ms: float


def measure_retry(
    env: BenchEnv, pools: Pools, *, parked: bool, count: int, scheduler_interval_ms: int
) -> RetryResult:
    """Retries through the broker's delay queue (the default for short delays; the pool of
    row 6.1, which has the default 500 ms scheduler), or parked in the database with the
    scheduler publishing every ``scheduler_interval_ms``."""
    # 0 parks every retry in the database; the default keeps short ones in the broker.
    overrides = (
        {"BROKER_DELAY_LIMIT": "0", "SCHEDULER_INTERVAL": str(scheduler_interval_ms)} if parked else {}
    )
    [pool] = pools.start(webhook_pool(1, POOL_THREADS, **overrides))
    env.reset()
    engine = get_engine(env.database_url)
    with engine.begin() as conn:
        for statement in _TRIGGER:
            conn.execute(text(statement))
    channel = Channel.WEBHOOK
    with http_peer(fail_first=True) as url, pool.released():
        produced = produce(
            env,
            channel,
            send_fields(channel, url),
            count=count,
            time_limit_s=count / SEND_RATE + 5,
            rate=SEND_RATE,
        )
        env.wait_done(channel, produced.count, DRAIN_LIMIT_S)
        arrivals: dict[str, float] = peer_stats(url)["retry_arrivals"]  # type: ignore[assignment]
    with engine.begin() as conn:
        due: dict[str, float] = dict(
            conn.execute(text("SELECT id, extract(epoch FROM due) FROM bench_due WHERE attempt = 1")).all()
        )
        conn.execute(text("DROP TRIGGER IF EXISTS bench_due ON notification_logs"))
        conn.execute(text("DROP TABLE IF EXISTS bench_due"))
    late = [(arrivals[i] - float(due[i])) * 1000 for i in arrivals if i in due]
    return RetryResult(
        path="parked" if parked else "broker delay",
        retried=len(late),
        p50_late_ms=percentile(late, 0.50),
        p99_late_ms=percentile(late, 0.99),
    )
