"""Delivery tracking: every state change of a message's ``notification_logs`` row.

The row is the truth about a message; the broker only carries its id. A worker *claims* a
row before sending (an atomic UPDATE that also returns the payload), so a redelivered or
duplicated broker message finds the row already ``sent`` and is acknowledged without a
second send. A claim is a lease: if the worker dies, the lease runs out and the next copy
of the message may claim it. Each claim is an attempt, and the claim is where the maximum
holds: a message whose attempts are all spent without an outcome on record (its worker
died, or writing the outcome failed) is failed there instead of being attempted again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Select,
    String,
    Table,
    and_,
    bindparam,
    case,
    delete,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared import metrics
from shared.channels import Channel, Status
from shared.db.models import NotificationLog, utcnow
from shared.errors import IdempotencyKeyReused
from shared.payloads import Stored

#: Longest error text we keep per message; provider bodies can be large.
MAX_ERROR_CHARS = 2000

#: Error code of a message failed at its claim because all its attempts were spent.
EXHAUSTED_CODE = "attempts_exhausted"


def new_message_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class NewMessage:
    channel: Channel
    recipient: str
    payload: Stored
    max_attempts: int
    user_id: str | None = None
    event_type: str | None = None
    event_id: str | None = None
    idempotency_key: str | None = None
    #: Whose ``idempotency_key`` it is: a key is unique within its scope only. Empty for the
    #: keys the service makes itself (events, webhook fan-out).
    idempotency_scope: str = ""
    #: A hash of the request that carries the key (made by the producer): the same key with
    #: another fingerprint is refused. None: not compared (the service's own keys).
    request_fingerprint: str | None = None
    template_key: str | None = None
    template_version: int | None = None
    #: Hold the message until then (scheduled sends, quiet hours); None publishes now.
    due_at: datetime | None = None
    #: A scheduled send: the time its sender asked for (kept after it went), and the zone a
    #: local time was read in. With ``due_at`` the row waits as ``scheduled``.
    send_at: datetime | None = None
    send_at_zone: str | None = None
    #: A later escalation step: the first step's message, the condition, and the step before.
    escalation_of: str | None = None
    escalation_if: str | None = None
    escalation_after: str | None = None
    #: The event rule that made it (analytics group by it).
    rule_id: str | None = None

    @property
    def experiment(self) -> tuple[str | None, str | None]:
        """The experiment and variant its template reference was given, if any."""
        ref = getattr(self.payload.payload, "template", None)
        return (ref.experiment, ref.variant) if ref is not None and ref.variant else (None, None)

    @property
    def status(self) -> Status:
        """Where the new row starts: a scheduled send waits, anything else is queued."""
        return Status.SCHEDULED if self.send_at is not None and self.due_at is not None else Status.QUEUED


def create(session: Session, message: NewMessage) -> tuple[str, bool]:
    """Insert the row for a new message. Returns ``(id, created)``; with an idempotency key
    already used in its scope for the same request, returns the first message's id and
    ``created=False``; for another request, raises :class:`IdempotencyKeyReused`."""
    result = create_many(session.connection(), [message])[0]
    if isinstance(result, IdempotencyKeyReused):
        raise result
    return result


def create_many(
    connection: Connection, messages: Sequence[NewMessage]
) -> list[tuple[str, bool] | IdempotencyKeyReused]:
    """Insert the rows of new messages in one statement; ``(id, created)`` for each, in order.
    A message whose idempotency key is already taken in its scope (by an earlier message, or
    earlier in ``messages``) gets that message's id and ``created=False`` if it is the same
    request, and :class:`IdempotencyKeyReused` (returned, not raised: its neighbours are
    written all the same) if it is not."""
    if not messages:
        return []
    now = utcnow()
    rows = [_row(m, now) for m in messages]
    keys = [(m.idempotency_scope, m.idempotency_key, m.request_fingerprint) for m in messages]
    results = insert_keyed(connection, _LOGS, _BY_KEY, rows, keys)
    for message, result in zip(messages, results, strict=True):
        if isinstance(result, tuple) and result[1]:
            metrics.ENQUEUED.labels(message.channel.value).inc()
    return results


#: (scope, key, request fingerprint) of one row to insert.
KeyOf = tuple[str, str | None, str | None]


def insert_keyed(
    connection: Connection,
    table: Table,
    by_key: Select[Any],
    rows: list[dict[str, Any]],
    keys: Sequence[KeyOf],
) -> list[tuple[str, bool] | IdempotencyKeyReused]:
    """Insert ``rows`` into ``table`` in one statement, idempotency keys unique per scope:
    ``(id, created)`` for each row in order, the holder's id with ``created=False`` for the
    same request under a taken key, :class:`IdempotencyKeyReused` for a different one.
    ``by_key`` selects scope, key, id and fingerprint of the rows holding ``:keys``."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(table)
        .on_conflict_do_nothing(index_elements=["idempotency_key", "idempotency_scope"])
        .returning(table.c.id)
    )
    inserted = {row.id for row in connection.execute(statement, rows)}
    repeats = {
        (scope, key)
        for (scope, key, _), row in zip(keys, rows, strict=True)
        if row["id"] not in inserted and key is not None
    }
    holders = (
        {
            (h.idempotency_scope, h.idempotency_key): h
            for h in connection.execute(by_key, {"keys": list({key for _, key in repeats})})
        }
        if repeats
        else {}
    )
    results: list[tuple[str, bool] | IdempotencyKeyReused] = []
    for (scope, key, fingerprint), row in zip(keys, rows, strict=True):
        if row["id"] in inserted:
            results.append((row["id"], True))
            continue
        holder = holders.get((scope, key))
        if holder is None:  # a conflict on the key, yet no row holds it: nothing to return
            raise RuntimeError(f"row with idempotency key {key!r} was not stored")
        if same_request(holder.request_fingerprint, fingerprint):
            results.append((holder.id, False))
        else:
            results.append(key_reused(key))
    return results


def same_request(first: str | None, again: str | None) -> bool:
    """Whether two request fingerprints name the same request (None: not compared)."""
    return first is None or again is None or first == again


def key_reused(key: str | None) -> IdempotencyKeyReused:
    message = f"idempotency key {key!r} was already used for a different request"
    return IdempotencyKeyReused(message, [{"field": "idempotencyKey", "message": message}])


def _row(message: NewMessage, now: datetime) -> dict[str, Any]:
    experiment_id, variant = message.experiment
    return {
        "id": new_message_id(),
        "channel": message.channel.value,
        "status": message.status.value,
        "recipient": message.recipient,
        "user_id": message.user_id,
        "event_type": message.event_type,
        "event_id": message.event_id,
        "template_key": message.template_key,
        "template_version": message.template_version,
        "idempotency_key": message.idempotency_key,
        "idempotency_scope": message.idempotency_scope,
        "request_fingerprint": message.request_fingerprint,
        "payload": message.payload.to_json(),
        "attempts": 0,
        "max_attempts": message.max_attempts,
        "next_attempt_at": message.due_at or now,
        "due_at": message.due_at,
        "send_at": message.send_at,
        "send_at_zone": message.send_at_zone,
        "escalation_of": message.escalation_of,
        "escalation_if": message.escalation_if,
        "escalation_after": message.escalation_after,
        "rule_id": message.rule_id,
        "experiment_id": experiment_id,
        "variant": variant,
        "created_at": now,
        "updated_at": now,
    }


def discard(session: Session, message_id: str) -> None:
    """Remove a message the broker never confirmed: the caller was told it was not accepted."""
    discard_many(session.connection(), [message_id])


def discard_many(connection: Connection, message_ids: Sequence[str]) -> None:
    """Remove messages the broker never confirmed (their callers were told so); only while
    still queued and never attempted."""
    connection.execute(
        delete(_LOGS).where(
            _LOGS.c.id.in_(list(message_ids)),
            _LOGS.c.status == Status.QUEUED.value,
            _LOGS.c.attempts == 0,
        )
    )


@dataclass(frozen=True)
class Claimed:
    """One attempt of a message, taken by a worker. ``payload`` is the row's JSON as stored;
    the pipeline reads it once into its typed form (:func:`shared.payloads.load`)."""

    id: str
    channel: Channel
    recipient: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    user_id: str | None
    event_type: str | None
    created_at: datetime | None = None


@dataclass(frozen=True)
class AlreadyFinal:
    status: Status


@dataclass(frozen=True)
class Busy:
    """Another worker holds a live claim until ``until``."""

    until: datetime


@dataclass(frozen=True)
class Missing:
    pass


ClaimResult = Claimed | AlreadyFinal | Busy | Missing

_LOGS = cast(Table, NotificationLog.__table__)
#: Queued, or claimed by a worker whose lease is over.
_CLAIMABLE = or_(
    _LOGS.c.status == Status.QUEUED.value,
    and_(
        _LOGS.c.status == Status.PROCESSING.value,
        or_(_LOGS.c.locked_until.is_(None), _LOGS.c.locked_until < bindparam("now")),
    ),
)
_CLAIM = (
    update(_LOGS)
    .where(
        _LOGS.c.id.in_(bindparam("ids", expanding=True)),
        _CLAIMABLE,
        _LOGS.c.attempts < _LOGS.c.max_attempts,
    )
    .values(
        status=Status.PROCESSING.value,
        attempts=_LOGS.c.attempts + 1,
        locked_until=bindparam("until"),
        due_at=None,
        updated_at=bindparam("now"),
    )
    .returning(
        _LOGS.c.id,
        _LOGS.c.channel,
        _LOGS.c.recipient,
        _LOGS.c.payload,
        _LOGS.c.attempts,
        _LOGS.c.max_attempts,
        _LOGS.c.user_id,
        _LOGS.c.event_type,
        _LOGS.c.created_at,
    )
)
_BY_KEY = select(
    _LOGS.c.idempotency_scope, _LOGS.c.idempotency_key, _LOGS.c.id, _LOGS.c.request_fingerprint
).where(_LOGS.c.idempotency_key.in_(bindparam("keys", expanding=True)))
#: Claimable messages with no attempt left end as failed. The last attempt's outcome is not
#: known, so whatever its worker did, another attempt would be one past the maximum.
_END_EXHAUSTED = (
    update(_LOGS)
    .where(
        _LOGS.c.id.in_(bindparam("ids", expanding=True)),
        _CLAIMABLE,
        _LOGS.c.attempts >= _LOGS.c.max_attempts,
    )
    .values(
        status=Status.FAILED.value,
        last_error="gave up after "
        + _LOGS.c.attempts.cast(String)
        + " attempts: the outcome of the last one was never recorded",
        error_code=EXHAUSTED_CODE,
        completed_at=bindparam("now"),
        next_attempt_at=None,
        due_at=None,
        locked_until=None,
        updated_at=bindparam("now"),
    )
    .returning(_LOGS.c.id, _LOGS.c.channel, _LOGS.c.created_at)
)
_WHERE_THEY_STAND = select(_LOGS.c.id, _LOGS.c.status, _LOGS.c.locked_until).where(
    _LOGS.c.id.in_(bindparam("ids", expanding=True))
)


def claim(session: Session, message_id: str, lease: timedelta) -> ClaimResult:
    """Take the message for one attempt, or say why not."""
    return claim_many(session.connection(), [message_id], lease)[0]


def claim_many(connection: Connection, message_ids: Sequence[str], lease: timedelta) -> list[ClaimResult]:
    """Take each message for one attempt, or say why not: one statement for all of them (and
    one more only for those not taken). A message named twice is taken once; the second
    copy finds it busy."""
    now = utcnow()
    taken = {
        row.id: row
        for row in connection.execute(
            _CLAIM, {"ids": list(set(message_ids)), "now": now, "until": now + lease}
        )
    }
    others = [i for i in message_ids if i not in taken]
    exhausted = _end_exhausted(connection, others, now) if others else set()
    others = [i for i in others if i not in exhausted]
    standing = (
        {row.id: row for row in connection.execute(_WHERE_THEY_STAND, {"ids": list(set(others))})}
        if others
        else {}
    )
    results: list[ClaimResult] = []
    handed_out: set[str] = set()
    for message_id in message_ids:
        row = taken.get(message_id)
        if row is not None and message_id not in handed_out:
            handed_out.add(message_id)
            metrics.ATTEMPTS.labels(row.channel).inc()
            results.append(
                Claimed(
                    id=row.id,
                    channel=Channel(row.channel),
                    recipient=row.recipient,
                    payload=row.payload,
                    attempt=row.attempts,
                    max_attempts=row.max_attempts,
                    user_id=row.user_id,
                    event_type=row.event_type,
                    created_at=row.created_at,
                )
            )
        elif row is not None:
            results.append(Busy(until=now + lease))
        elif message_id in exhausted:
            results.append(AlreadyFinal(Status.FAILED))
        else:
            results.append(_not_taken(standing.get(message_id), now))
    return results


def _end_exhausted(connection: Connection, message_ids: Sequence[str], now: datetime) -> set[str]:
    """Fail the claimable ones among ``message_ids`` that have no attempt left; their ids."""
    ended = list(connection.execute(_END_EXHAUSTED, {"ids": list(set(message_ids)), "now": now}))
    for row in ended:
        _count(Finish(row.id, 0, Status.FAILED, code=EXHAUSTED_CODE), row.channel, row.created_at, now)
    return {row.id for row in ended}


def _not_taken(row: Any, now: datetime) -> ClaimResult:
    if row is None:
        return Missing()
    status = Status(row.status)
    if status.is_terminal:
        return AlreadyFinal(status)
    return Busy(until=row.locked_until or now)


@dataclass(frozen=True)
class Finish:
    """The outcome of one claimed attempt, as it is written to the message's row.

    ``status`` is terminal (sent, delivered, failed, skipped) or ``queued`` again: then
    ``next_attempt_at`` says when, ``parked`` hands the message to the scheduler until then
    (long delays) instead of the broker, and ``refund`` gives the attempt back (quiet hours:
    a message held back was not attempted)."""

    message_id: str
    attempt: int
    status: Status
    error: str | None = None
    code: str | None = None
    provider_message_id: str | None = None
    #: Which of the channel's named providers this attempt ended with.
    provider: str | None = None
    next_attempt_at: datetime | None = None
    parked: bool = False
    refund: bool = False


def finish_many(connection: Connection, finishes: Sequence[Finish]) -> list[bool]:
    """Apply each outcome, but only for the attempt that holds the claim (a late, superseded
    attempt must not overwrite a newer outcome); True for each one applied."""
    if not finishes:
        return []
    now = utcnow()
    if connection.dialect.name == "postgresql":
        rows = _finish_in_one_statement(connection, finishes, now)
    else:
        rows = [row for f in finishes for row in _finish_one(connection, f, now)]
    applied = {row.id: row for row in rows}
    for f in finishes:
        row = applied.get(f.message_id)
        if row is not None:
            _count(f, row.channel, row.created_at, now)
    return [f.message_id in applied for f in finishes]


def _count(finish: Finish, channel: str, created_at: datetime, now: datetime) -> None:
    reason = finish.code or "ok"
    if finish.status.is_terminal:
        metrics.COMPLETED.labels(channel, finish.status.value, reason).inc()
        metrics.DELIVERY_LATENCY.labels(channel, finish.status.value).observe(
            (now - created_at).total_seconds()
        )
    else:
        metrics.RETRIES.labels(channel, reason).inc()


#: Every outcome of a batch in one statement on PostgreSQL: the batch arrives as arrays.
_FINISH_ALL = text(
    """
    UPDATE notification_logs AS t SET
        status = v.status,
        last_error = v.error,
        error_code = v.code,
        provider_message_id = COALESCE(v.pmid, t.provider_message_id),
        provider = COALESCE(v.provider, t.provider),
        sent_at = CASE WHEN v.status IN ('sent', 'delivered') THEN :now ELSE t.sent_at END,
        delivered_at = CASE WHEN v.status = 'delivered' THEN :now ELSE t.delivered_at END,
        completed_at = CASE WHEN v.status IN ('queued', 'processing') THEN t.completed_at ELSE :now END,
        next_attempt_at = v.next_at,
        due_at = CASE WHEN v.parked THEN v.next_at END,
        attempts = t.attempts - CASE WHEN v.refund THEN 1 ELSE 0 END,
        locked_until = NULL,
        updated_at = :now
    FROM unnest(
        CAST(:ids AS text[]), CAST(:attempts AS integer[]), CAST(:statuses AS text[]),
        CAST(:errors AS text[]), CAST(:codes AS text[]), CAST(:pmids AS text[]),
        CAST(:providers AS text[]), CAST(:next_ats AS timestamptz[]), CAST(:parked AS boolean[]),
        CAST(:refunds AS boolean[])
    ) AS v(id, attempt, status, error, code, pmid, provider, next_at, parked, refund)
    WHERE t.id = v.id AND t.status = 'processing' AND t.attempts = v.attempt
    RETURNING t.id, t.channel, t.created_at
    """
)


def _finish_in_one_statement(connection: Connection, finishes: Sequence[Finish], now: datetime) -> list[Any]:
    params = {
        "now": now,
        "ids": [f.message_id for f in finishes],
        "attempts": [f.attempt for f in finishes],
        "statuses": [f.status.value for f in finishes],
        "errors": [_error_text(f.error) for f in finishes],
        "codes": [f.code for f in finishes],
        "pmids": [f.provider_message_id for f in finishes],
        "providers": [f.provider for f in finishes],
        "next_ats": [f.next_attempt_at for f in finishes],
        "parked": [f.parked for f in finishes],
        "refunds": [f.refund for f in finishes],
    }
    return list(connection.execute(_FINISH_ALL, params))


def _finish_one(connection: Connection, f: Finish, now: datetime) -> list[Any]:
    values: dict[str, Any] = {
        "status": f.status.value,
        "last_error": _error_text(f.error),
        "error_code": f.code,
        "next_attempt_at": f.next_attempt_at,
        "due_at": f.next_attempt_at if f.parked else None,
        "locked_until": None,
        "updated_at": now,
    }
    if f.provider_message_id is not None:
        values["provider_message_id"] = f.provider_message_id
    if f.provider is not None:
        values["provider"] = f.provider
    if f.status in (Status.SENT, Status.DELIVERED):
        values["sent_at"] = now
    if f.status is Status.DELIVERED:
        values["delivered_at"] = now
    if f.status.is_terminal:
        values["completed_at"] = now
    if f.refund:
        values["attempts"] = _LOGS.c.attempts - 1
    statement = (
        update(_LOGS)
        .where(
            _LOGS.c.id == f.message_id,
            _LOGS.c.status == Status.PROCESSING.value,
            _LOGS.c.attempts == f.attempt,
        )
        .values(**values)
        .returning(_LOGS.c.id, _LOGS.c.channel, _LOGS.c.created_at)
    )
    return list(connection.execute(statement))


def _error_text(error: str | None) -> str | None:
    return None if error is None else error[:MAX_ERROR_CHARS]


def mark_sent(
    session: Session,
    message_id: str,
    attempt: int,
    *,
    provider_message_id: str | None,
    delivered: bool,
) -> bool:
    status = Status.DELIVERED if delivered else Status.SENT
    finish = Finish(message_id, attempt, status, provider_message_id=provider_message_id)
    return finish_many(session.connection(), [finish])[0]


def mark_failed(session: Session, message_id: str, attempt: int, *, error: str, code: str) -> bool:
    return finish_many(session.connection(), [Finish(message_id, attempt, Status.FAILED, error, code)])[0]


def mark_skipped(session: Session, message_id: str, attempt: int, *, reason: str, code: str) -> bool:
    return finish_many(session.connection(), [Finish(message_id, attempt, Status.SKIPPED, reason, code)])[0]


def mark_retry(
    session: Session, message_id: str, attempt: int, *, error: str, code: str, at: datetime, park: bool
) -> bool:
    """Back to ``queued`` until ``at``. ``park`` hands the message to the scheduler (long
    delays); otherwise the broker's delay queue holds it."""
    finish = Finish(message_id, attempt, Status.QUEUED, error, code, next_attempt_at=at, parked=park)
    return finish_many(session.connection(), [finish])[0]


def defer(session: Session, message_id: str, attempt: int, *, until: datetime, reason: str) -> bool:
    """Hold a claimed message until ``until`` without counting an attempt (quiet hours): it
    is parked for the scheduler like a long retry delay."""
    finish = Finish(
        message_id,
        attempt,
        Status.QUEUED,
        f"delayed: {reason}",
        "deferred",
        next_attempt_at=until,
        parked=True,
        refund=True,
    )
    return finish_many(session.connection(), [finish])[0]


def close_unsendable(session: Session, message_id: str, *, status: Status, reason: str, code: str) -> bool:
    """End a queued message that cannot be sent (a rule's message with no address or no
    template, a webhook whose endpoint was deleted): ``skipped`` or ``failed`` straight from
    ``queued``, without another attempt."""
    if not status.is_terminal:
        raise ValueError(f"{status.value} does not end a message")
    now = utcnow()
    row = session.execute(
        update(NotificationLog)
        .where(NotificationLog.id == message_id, NotificationLog.status == Status.QUEUED.value)
        .values(
            status=status.value,
            last_error=reason[:MAX_ERROR_CHARS],
            error_code=code,
            completed_at=now,
            next_attempt_at=None,
            due_at=None,
            updated_at=now,
        )
        .returning(NotificationLog.channel)
    ).one_or_none()
    if row is None:
        return False
    metrics.COMPLETED.labels(row.channel, status.value, code).inc()
    return True


#: A message no worker has taken: scheduled, or queued and never attempted (a refunded
#: attempt, held back by quiet hours, counts as never made).
_NOT_STARTED = or_(
    NotificationLog.status == Status.SCHEDULED.value,
    and_(NotificationLog.status == Status.QUEUED.value, NotificationLog.attempts == 0),
)


def _owned_by(for_user: str | None) -> list[Any]:
    return [] if for_user is None else [NotificationLog.user_id == for_user]


def cancel(session: Session, message_id: str, *, for_user: str | None = None) -> bool:
    """End a message that has not started as ``canceled``; False if it has (or is not there,
    or, with ``for_user``, not that user's). Its sender's choice: no error is recorded."""
    which = and_(NotificationLog.id == message_id, *_owned_by(for_user))
    return bool(cancel_where(session.connection(), which, code="canceled"))


def cancel_where(connection: Connection, which: Any, *, code: str, reason: str | None = None) -> list[str]:
    """End the messages matching ``which`` that have not started as ``canceled``; the ids
    canceled. With ``reason`` (an escalation step no longer needed) the row says why. One
    conditional UPDATE: against the scheduler publishing a message or a worker claiming it at
    the same moment, exactly one of them wins, and a claim never takes a canceled row."""
    now = utcnow()
    values: dict[str, Any] = {
        "status": Status.CANCELED.value,
        "due_at": None,
        "next_attempt_at": None,
        "completed_at": now,
        "updated_at": now,
    }
    if reason is not None:
        values |= {"last_error": reason[:MAX_ERROR_CHARS], "error_code": code}
    rows = connection.execute(
        update(NotificationLog)
        .where(which, _NOT_STARTED)
        .values(values)
        .returning(NotificationLog.id, NotificationLog.channel)
        .execution_options(synchronize_session=False)
    ).all()
    for row in rows:
        metrics.COMPLETED.labels(row.channel, Status.CANCELED.value, code).inc()
    return [row.id for row in rows]


def reschedule(
    session: Session, message_id: str, at: datetime, zone: str | None, *, for_user: str | None = None
) -> bool:
    """Move a scheduled message to ``at`` (``zone``: the one a local time was read in); False
    if it is no longer scheduled (the scheduler published it, or it was canceled)."""
    row = session.execute(
        update(NotificationLog)
        .where(
            NotificationLog.id == message_id,
            NotificationLog.status == Status.SCHEDULED.value,
            *_owned_by(for_user),
        )
        .values(due_at=at, next_attempt_at=at, send_at=at, send_at_zone=zone, updated_at=utcnow())
        .returning(NotificationLog.id)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    return row is not None


def reopen(
    session: Session, message_id: str, *, extra_attempts: int, from_statuses: frozenset[Status]
) -> bool:
    """Give a finished message ``extra_attempts`` more attempts (a replay, a dead letter sent
    again): back to ``queued``, due now. Only from one of ``from_statuses``; False otherwise.
    The caller publishes the id after commit."""
    if not from_statuses or not all(s.is_terminal for s in from_statuses):
        raise ValueError("only a finished message can be reopened")
    now = utcnow()
    row = session.execute(
        update(NotificationLog)
        .where(
            NotificationLog.id == message_id,
            NotificationLog.status.in_([s.value for s in from_statuses]),
        )
        .values(
            status=Status.QUEUED.value,
            max_attempts=NotificationLog.attempts + extra_attempts,
            next_attempt_at=now,
            due_at=None,
            locked_until=None,
            completed_at=None,
            updated_at=now,
        )
        .returning(NotificationLog.channel)
    ).one_or_none()
    return row is not None


def get(session: Session, message_id: str) -> NotificationLog | None:
    return session.get(NotificationLog, message_id)


#: A scheduled send the scheduler publishes is queued from then on, like any message.
_SCHEDULED_GOES_TO_QUEUE = case(
    (NotificationLog.status == Status.SCHEDULED.value, Status.QUEUED.value), else_=NotificationLog.status
)


def take_due(
    session: Session,
    *,
    channels: list[Channel],
    limit: int,
    stale_after: timedelta,
    now: datetime | None = None,
) -> list[tuple[str, Channel]]:
    """Messages the scheduler must publish now: parked ones whose time has come, and ones the
    broker has evidently lost (queued or claimed long past their planned time, e.g. a crash
    between the row insert and the publish). Marks them as handed back to the broker.
    ``now``: the instant the caller checked escalation steps at (a step due after it was
    not checked, and must wait for the next pass)."""
    now = now or utcnow()
    stale = now - stale_after
    names = [c.value for c in channels]
    due_clause = and_(NotificationLog.due_at.is_not(None), NotificationLog.due_at <= now)
    lost_clause = or_(
        and_(
            NotificationLog.status == Status.QUEUED.value,
            NotificationLog.due_at.is_(None),
            NotificationLog.next_attempt_at < stale,
        ),
        and_(
            NotificationLog.status == Status.PROCESSING.value,
            NotificationLog.locked_until < stale,
        ),
    )
    picked: list[tuple[str, Channel]] = []
    for clause in (due_clause, lost_clause):
        query = (
            select(NotificationLog.id, NotificationLog.channel)
            .where(NotificationLog.channel.in_(names), clause)
            .order_by(NotificationLog.next_attempt_at)
            .limit(limit - len(picked))
            .with_for_update(skip_locked=True)
        )
        rows = session.execute(query).all()
        if rows:
            # The clause again: without row locks (SQLite) a cancel may have come in between,
            # and only rows still due may go.
            taken = session.execute(
                update(NotificationLog)
                .where(NotificationLog.id.in_([r.id for r in rows]), clause)
                .values(
                    status=_SCHEDULED_GOES_TO_QUEUE,
                    due_at=None,
                    next_attempt_at=now,
                    locked_until=now,
                    updated_at=now,
                )
                .returning(NotificationLog.id, NotificationLog.channel)
                .execution_options(synchronize_session=False)
            ).all()
            picked.extend((r.id, Channel(r.channel)) for r in taken)
        if len(picked) >= limit:
            break
    return picked


@dataclass(frozen=True, slots=True, order=True)
class Staged:
    """A scheduled send or a parked message (a retry, or a rule's delayed send) taken ahead of
    its time: published when ``due`` (ordered by it). ``parked`` and ``attempts`` say what
    it was when taken, for giving it back."""

    due: datetime
    id: str
    channel: Channel
    parked: bool = False
    attempts: int = 0


#: What a scheduler may take ahead: scheduled sends (not escalation steps, whose condition
#: is checked when due) and messages parked in the database until their time.
_PARKED = and_(NotificationLog.status == Status.QUEUED.value, NotificationLog.due_at.is_not(None))
_STAGEABLE = or_(
    and_(NotificationLog.status == Status.SCHEDULED.value, NotificationLog.escalation_of.is_(None)),
    _PARKED,
)


def stage_scheduled(
    session: Session, *, channels: list[Channel], until: datetime, limit: int
) -> list[Staged]:
    """Scheduled sends and parked messages due by ``until``, taken by one scheduler ahead of
    their time so that a burst due in the same second costs only its publish when the second
    comes, and each goes out at its time rather than at the scheduler's next tick. They are
    ``queued`` from now (a cancel still ends a scheduled send until a worker takes it) with
    their due time as ``next_attempt_at``; the caller writes their relay markers in the same
    transaction."""
    rows = session.execute(
        select(NotificationLog.id, NotificationLog.status)
        .where(
            NotificationLog.channel.in_([c.value for c in channels]),
            _STAGEABLE,
            NotificationLog.due_at <= until,
        )
        .order_by(NotificationLog.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return []
    parked = {r.id for r in rows if r.status == Status.QUEUED.value}
    now = utcnow()
    taken = session.execute(
        update(NotificationLog)
        # The clause again, for SQLite, which has no row locks: a cancel may have come in between.
        .where(NotificationLog.id.in_([r.id for r in rows]), _STAGEABLE)
        .values(
            status=Status.QUEUED.value,
            next_attempt_at=NotificationLog.due_at,
            due_at=None,
            locked_until=now,
            updated_at=now,
        )
        .returning(
            NotificationLog.id,
            NotificationLog.channel,
            NotificationLog.next_attempt_at,
            NotificationLog.attempts,
        )
        .execution_options(synchronize_session=False)
    ).all()
    return [Staged(r.next_attempt_at, r.id, Channel(r.channel), r.id in parked, r.attempts) for r in taken]


def unstage(session: Session, staged: Sequence[Staged]) -> int:
    """Give what a scheduler took ahead and never published back (it is stopping), for any
    scheduler to take again: scheduled sends as ``scheduled``, the others parked again. Those
    canceled or taken by a worker meanwhile (their attempts moved on) stay as they are.
    Returns how many went back."""
    groups: dict[tuple[bool, int], list[str]] = {}
    for s in staged:
        groups.setdefault((s.parked, s.attempts), []).append(s.id)
    back = 0
    for (parked, attempts), ids in groups.items():
        status = Status.QUEUED if parked else Status.SCHEDULED
        rows = session.execute(
            update(NotificationLog)
            .where(
                NotificationLog.id.in_(ids),
                NotificationLog.status == Status.QUEUED.value,
                NotificationLog.due_at.is_(None),
                NotificationLog.attempts == attempts,
            )
            .values(status=status.value, due_at=NotificationLog.next_attempt_at, updated_at=utcnow())
            .returning(NotificationLog.id)
            .execution_options(synchronize_session=False)
        ).all()
        back += len(rows)
    return back
