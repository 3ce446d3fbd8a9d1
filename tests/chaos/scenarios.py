"""The faults, each injected while a steady load runs, then measured once the fleet drains.

Each scenario sends its own batch of messages; the fault lasts as long as the load, and the
drain time is counted from the end of both.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pika

from producer.service import NotificationService
from shared import tracking
from shared.broker import amqp_url_with_defaults, get_broker, publish
from shared.channels import Channel
from shared.db.models import utcnow
from shared.db.rls import system_scope
from tests.chaos.load import FULL_MIX, MIX, Accepted, Load, sink_copies
from tests.chaos.pools import Fleet
from tests.chaos.stack import Stack
from tests.chaos.tally import Result, tally, wait_drained
from tests.poison import POISON_PAYLOAD

#: Seconds between SIGKILLs of a worker process in the worker-kill scenario.
KILL_EVERY = 2.0
#: Seconds between SIGTERMs of a pool in the graceful-shutdown scenario.
TERM_EVERY = 4.0
#: Seconds a stopped service stays down.
OUTAGE = 5.0
#: Poison messages mixed into the load in the poison scenario.
POISON = 20
#: Attempts a poison message gets before it is dead-lettered.
POISON_ATTEMPTS = 3
#: The scheduled-restart scenario's messages are due this long after their fill ends, and
#: every worker process is killed this long before they are due.
SCHEDULED_LEAD = 6.0
KILL_BEFORE_DUE = 2.0
#: The pace the fill is planned at: the four-channel mix went through ``send_many`` at about
#: 1,400 a second on the 2-core machine while the pools started beside it.
FILL_RATE = 1000
#: Scheduled messages per ``send_many`` call.
SCHEDULE_CHUNK = 1000


@dataclass
class Run:
    stack: Stack
    fleet: Fleet
    service: NotificationService
    messages: int
    rate: float
    drain_timeout: float
    rng: random.Random


def _during(load: Load, every: float, action: Callable[[], None]) -> None:
    """Call ``action`` every ``every`` seconds until the load has been sent."""
    while not load.done:
        time.sleep(every)
        if not load.done:
            action()


def _finish(
    run: Run,
    name: str,
    load: Load,
    programmed_before: int,
    *,
    fault_ended: float | None = None,
    **notes: Any,
) -> Result:
    """Wait for the fleet to drain and count; the drain time runs from ``fault_ended``
    (default: now, the end of the load)."""
    ended = fault_ended if fault_ended is not None else time.monotonic()
    wait_drained(run.stack.database_url, list(load.accepted.ids), run.drain_timeout)
    drain = time.monotonic() - ended
    time.sleep(1)  # let in-flight duplicates, if any, land before counting
    webhooks = run.stack.peers.webhooks
    assert webhooks is not None
    result = tally(
        name,
        run.stack.database_url,
        load.accepted.ids,
        sink_copies(run.stack.peers, load.accepted),
        refused=load.accepted.refused,
        refusals_served=webhooks.programmed - programmed_before,
        drain_seconds=drain,
    )
    result.notes.update(notes)
    return result


def worker_kills(run: Run) -> Result:
    """1. SIGKILL a random worker process of each pool in turn; supervisors restart pools. The
    load goes to every channel, push and chat included."""
    restarts_before = run.fleet.restarts
    programmed = _programmed(run)
    load = Load(run.service, run.stack.peers, run.messages, run.rate, mix=FULL_MIX).start()
    pools = list(run.fleet.pools.values())
    kills = 0
    turn = itertools.cycle(pools)

    def kill_next() -> None:
        nonlocal kills
        if next(turn).kill_random_worker(run.rng):
            kills += 1

    _during(load, KILL_EVERY, kill_next)
    load.join()
    result = _finish(run, "1 worker SIGKILL", load, programmed, kills=kills)
    result.notes["pool_restarts"] = run.fleet.restarts - restarts_before
    return result


def poison(run: Run) -> Result:
    """6. Messages whose actor crashes every time: dead-lettered and failed, queue not blocked."""
    programmed = _programmed(run)
    load = Load(run.service, run.stack.peers, run.messages, run.rate).start()
    settings = run.service.settings
    broker = get_broker(settings)
    poisoned: list[str] = []
    for n in range(POISON):
        new = tracking.NewMessage(
            channel=Channel.IN_APP,
            recipient=f"user-poison-{n}",
            user_id=f"user-poison-{n}",
            payload=POISON_PAYLOAD,  # the in-app actor fails on it every time
            max_attempts=POISON_ATTEMPTS,
        )
        with system_scope(settings.database_url) as session:
            message_id, _ = tracking.create(session, new)
        publish(broker, Channel.IN_APP, message_id)
        poisoned.append(message_id)
        time.sleep(0.1)
    load.join()
    for message_id in poisoned:
        load.accepted.ids[message_id] = Channel.IN_APP
    result = _finish(run, "6 poison messages", load, programmed)
    rows = _poison_states(run, poisoned)
    result.notes.update(
        poison=POISON,
        poison_failed=rows.count("failed"),
        dead_letter_queue=_queue_depth(run.stack.broker_url, "in_app.XQ"),
    )
    if rows.count("failed") != POISON:
        result.lost += POISON - rows.count("failed")
    return result


def sink_faults(run: Run) -> Result:
    """5. Peers misbehave: SMTP 421/451 then recovery, 550; webhook timeouts, hang-ups, 500,
    429 with Retry-After, slow answers; Twilio 500 and 429. Email and SMS fail over to their
    second provider: while the first is down (a phase long: a count of refusals would outlast
    any outage once its circuit opens and only probes reach it) the second takes the load,
    hanging up and answering 503 a few times; then both are down for a phase, and messages
    wait for them."""
    peers = run.stack.peers
    webhooks = peers.webhooks
    assert webhooks is not None
    programmed = _programmed(run)
    burst = max(10, run.messages // 40)
    load = Load(run.service, peers, run.messages, run.rate).start()

    def providers_recovered() -> None:
        for peer in (peers.smtp, peers.smtp_backup, peers.twilio, peers.twilio_backup):
            peer.clear_faults()

    def server_errors() -> None:
        peers.smtp.fail_always(421, "4.3.2 try again later", stage="mail")
        peers.twilio.fail_always(500, 20500, "Internal Server Error")
        peers.smtp_backup.drop_next(times=3, stage="mail")
        peers.twilio_backup.fail_next(503, 20503, "Service Unavailable", times=3)
        webhooks.respond_next(500, times=burst)

    def throttling() -> None:
        providers_recovered()
        peers.smtp.fail_always(451, "4.7.1 greylisted", stage="rcpt")
        peers.twilio.fail_always(429, 20429, "Too Many Requests")
        peers.smtp_backup.fail_always(421, "4.3.2 down for maintenance", stage="mail")
        peers.twilio_backup.fail_always(503, 20503, "Service Unavailable")
        webhooks.respond_next(429, times=burst, headers={"Retry-After": "1"})
        webhooks.drop_next(times=burst)

    def refusals_and_timeouts() -> None:
        providers_recovered()
        peers.smtp.fail_next(550, "5.1.1 no such user", times=burst // 2, stage="rcpt")
        webhooks.delay = 2.5  # longer than WEBHOOK_TIMEOUT: the sender gives up

    def slow() -> None:
        webhooks.delay = 0.5  # slow, inside the timeout

    def recovered() -> None:
        webhooks.delay = 0.0

    phases = [server_errors, throttling, refusals_and_timeouts, slow, recovered]
    step = max(1.0, run.messages / run.rate / len(phases))
    for phase in phases:
        phase()
        time.sleep(step)
    load.join()
    providers_recovered()
    webhooks.delay = 0.0
    result = _finish(run, "5 misbehaving sinks", load, programmed)
    result.notes["emails_by_relay"] = {
        "relay-a": len(peers.smtp.received),
        "relay-b": len(peers.smtp_backup.received),
    }
    result.notes["sms_by_account"] = {
        "twilio": len(peers.twilio.requests),
        "twilio-b": len(peers.twilio_backup.requests),
    }
    return result


def graceful_shutdown(run: Run) -> Result:
    """7. SIGTERM each pool in turn mid-load; its supervisor starts it again."""
    programmed = _programmed(run)
    restarts_before = run.fleet.restarts
    load = Load(run.service, run.stack.peers, run.messages, run.rate).start()
    pools = list(run.fleet.pools.values())
    terms = 0

    def terminate_next() -> None:
        nonlocal terms
        pools[terms % len(pools)].terminate()
        terms += 1

    _during(load, TERM_EVERY, terminate_next)
    load.join()
    result = _finish(run, "7 graceful SIGTERM", load, programmed, terms=terms)
    result.notes["pool_restarts"] = run.fleet.restarts - restarts_before
    result.notes["exit_codes"] = sorted({c for p in pools for c in p.exit_codes})
    return result


def _outage(run: Run, stop: Callable[[], None], start: Callable[[], None]) -> float:
    """Stop a service a third into the load, keep it down OUTAGE seconds, start it again;
    returns when it came back (monotonic)."""
    time.sleep(run.messages / run.rate / 3)
    stop()
    time.sleep(OUTAGE)
    start()
    return time.monotonic()


def broker_restart(run: Run) -> Result:
    """2. RabbitMQ stops mid-load and comes back: producers refuse (never accept an
    unconfirmed publish), workers reconnect or their supervisors restart them."""
    programmed = _programmed(run)
    rabbitmq = run.stack.rabbitmq
    assert rabbitmq is not None, "the broker scenario needs the run's own RabbitMQ node"
    restarts_before = run.fleet.restarts
    load = Load(run.service, run.stack.peers, run.messages, run.rate).start()
    back = _outage(run, rabbitmq.stop, rabbitmq.start)
    load.join()
    result = _finish(run, "2 RabbitMQ restart", load, programmed, fault_ended=back, outage_s=OUTAGE)
    result.notes["pool_restarts"] = run.fleet.restarts - restarts_before
    result.notes["exit_codes"] = sorted({c for p in run.fleet.pools.values() for c in p.exit_codes})
    return result


def database_restart(run: Run) -> Result:
    """3. PostgreSQL stops mid-load (fast shutdown) and comes back: producers refuse while it
    is down, workers retry, and nothing is acknowledged before its state is durable."""
    programmed = _programmed(run)
    postgres = run.stack.postgres
    load = Load(run.service, run.stack.peers, run.messages, run.rate).start()
    back = _outage(run, postgres.stop, postgres.start)
    load.join()
    return _finish(run, "3 PostgreSQL restart", load, programmed, fault_ended=back, outage_s=OUTAGE)


def redis_stop(run: Run) -> Result:
    """4. Redis stops mid-load: delivery does not depend on it and carries on."""
    programmed = _programmed(run)
    redis = run.stack.redis
    load = Load(run.service, run.stack.peers, run.messages, run.rate).start()
    back = _outage(run, redis.stop, redis.start)
    load.join()
    return _finish(run, "4 Redis stopped", load, programmed, fault_ended=back, outage_s=OUTAGE)


def scheduled_restart(run: Run) -> Result:
    """8. Messages scheduled for the same moment a few seconds ahead; every worker process
    (and with it every scheduler) is SIGKILLed before they are due, the supervisors start the
    pools again, and each message fires exactly once."""
    programmed = _programmed(run)
    restarts_before = run.fleet.restarts
    peers = run.stack.peers
    assert peers.webhooks is not None
    accepted = Accepted()
    due = utcnow() + timedelta(seconds=run.messages / FILL_RATE + SCHEDULED_LEAD)
    items: list[dict[str, Any]] = []
    for n in range(run.messages):
        channel = MIX[n % len(MIX)]
        body = f"chaos scheduled {n}"
        if channel is Channel.EMAIL:
            fields: dict[str, Any] = {"to": f"user{n}@example.com", "subject": f"Later {n}", "text": body}
        elif channel is Channel.SMS:
            fields = {"to": f"+1415555{n % 10000:04d}", "message": body}
        elif channel is Channel.WEBHOOK:
            fields = {"url": peers.webhooks.url, "payload": {"n": n}}
        else:
            fields = {"user_id": f"user-{n % 50}", "title": f"Later {n}", "message": body}
        items.append({"channel": channel.value, **fields, "send_at": due})
    for start in range(0, len(items), SCHEDULE_CHUNK):
        chunk = items[start : start + SCHEDULE_CHUNK]
        for item, answer in zip(chunk, run.service.send_many(chunk), strict=True):
            if "id" not in answer:
                accepted.refused[answer["error"]["code"]] += 1
                continue
            channel = Channel.parse(item["channel"])
            accepted.ids[answer["id"]] = channel
            if channel is Channel.SMS:
                accepted.sms_bodies[answer["id"]] = item["message"]
    margin = (due - utcnow()).total_seconds()
    if margin < KILL_BEFORE_DUE:
        raise RuntimeError(
            f"the fill ended {-margin:.1f} s after the messages were due: this run cannot kill the "
            "fleet before they are due; plan a slower FILL_RATE"
        )
    time.sleep(margin - KILL_BEFORE_DUE)
    killed_before_due = (due - utcnow()).total_seconds()
    for pool in run.fleet.pools.values():
        pool.kill_all()
    # Those a scheduler had taken ahead of their time (SCHEDULER_LOOKAHEAD) are queued, with a
    # relay marker dated at their due time.
    scheduled_at_kill = _count_status(run, list(accepted.ids), "scheduled")
    taken_ahead_at_kill = _count_status(run, list(accepted.ids), "queued")
    wait_drained(run.stack.database_url, list(accepted.ids), run.drain_timeout)
    drain = (utcnow() - due).total_seconds()
    time.sleep(1)  # let in-flight duplicates, if any, land before counting
    result = tally(
        "8 scheduled, all SIGKILLed",
        run.stack.database_url,
        accepted.ids,
        sink_copies(peers, accepted),
        refused=accepted.refused,
        refusals_served=peers.webhooks.programmed - programmed,
        drain_seconds=drain,
    )
    result.notes.update(
        killed_before_due_s=round(killed_before_due, 1),
        scheduled_at_kill=scheduled_at_kill,
        taken_ahead_at_kill=taken_ahead_at_kill,
        pool_restarts=run.fleet.restarts - restarts_before,
    )
    return result


def _count_status(run: Run, ids: list[str], status: str) -> int:
    from tests.chaos.tally import statuses

    return sum(1 for found, _ in statuses(run.stack.database_url, ids).values() if found == status)


def warm_up(service: NotificationService, stack: Stack, timeout: float = 60.0) -> None:
    """Send one message per channel and wait until each is delivered: every pool is then
    consuming. They are nobody's load, and not counted."""
    webhooks = stack.peers.webhooks
    assert webhooks is not None
    ids = [
        service.send_email(to="warm-up@example.com", subject="warm-up", text="warm-up"),
        service.send_sms(to="+14155559999", message="warm-up"),
        service.send_webhook(url=webhooks.url, payload={"warmUp": True}),
        service.send_in_app_notification(user_id="warm-up", title="warm-up", message="warm-up"),
    ]
    waited = wait_drained(stack.database_url, ids, timeout)
    if waited >= timeout:
        raise RuntimeError(f"the pools did not deliver a first message per channel in {timeout:.0f}s")


def _programmed(run: Run) -> int:
    webhooks = run.stack.peers.webhooks
    assert webhooks is not None
    return webhooks.programmed


def _poison_states(run: Run, ids: list[str]) -> list[str]:
    from tests.chaos.tally import statuses

    rows = statuses(run.stack.database_url, ids)
    return [rows.get(i, ("missing", None))[0] for i in ids]


def _queue_depth(broker_url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url_with_defaults(broker_url)))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


SCENARIOS: dict[str, Callable[[Run], Result]] = {
    "1": worker_kills,
    "2": broker_restart,
    "3": database_restart,
    "4": redis_stop,
    "5": sink_faults,
    "6": poison,
    "7": graceful_shutdown,
    "8": scheduled_restart,
}
QUICK = ("1", "5", "6")
#: The order scenarios run in: the broker restart last, so a fleet it leaves degraded
#: cannot spoil the others' figures.
ORDER = ("1", "6", "5", "7", "8", "3", "4", "2")
