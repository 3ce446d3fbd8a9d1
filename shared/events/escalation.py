"""Escalation across channels: a rule's ordered steps, each later one sent only if still needed.

A rule with ``steps`` (``[{"channel": "in_app"}, {"channel": "email", "after": "30m", "if":
"notRead"}, {"channel": "sms", "after": "4h", "if": "notRead"}]``) sends its first step when
the event is processed, like any rule. Each later step's message is created at the same time,
``scheduled`` for ``after`` past the first step's send time, with the first step's message as
its ``escalation_of``, the step just before it as its ``escalation_after`` and its condition
as ``escalation_if``. When a step comes due, the scheduler checks the condition against those
messages as they stand then (:func:`settle_due`): a step no longer needed ends ``canceled``
with the reason, never sent.
Reading the first step's in-app notification, or deleting it unread, cancels the
escalation's pending steps at once (:func:`cancel_on_read`). Both cancel with the conditional
UPDATE of a scheduled send, so a race with the scheduler or a worker has exactly one outcome.

Conditions:

- ``notRead``: the first step's in-app notification has been neither read nor deleted (the
  first step must be in-app);
- ``notDelivered``: the step just before is neither sent nor delivered;
- ``failed``: the step just before failed.

A step just before that was canceled ended the escalation there: the later steps are not
needed either, whatever their condition.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session, aliased

from shared import tracking
from shared.channels import Channel, Status
from shared.db.models import Notification, NotificationLog

#: Most steps one rule may have: the first and four escalations.
MAX_STEPS = 5
#: The longest ``after`` a step may have: the longest rule delay, 30 days.
MAX_AFTER = timedelta(days=30)
#: Due steps the scheduler reads at a time while checking them.
SETTLE_BATCH = 500
#: ``after``: a whole number and a unit, seconds, minutes, hours or days.
DURATION_PATTERN = r"^([1-9]\d{0,6})(s|m|h|d)$"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

Condition = Literal["notRead", "notDelivered", "failed"]

#: ``error_code`` of a step canceled because its condition no longer held, or by a read.
NOT_NEEDED_CODE = "escalation_not_needed"
READ_CODE = "escalation_read"


def parse_duration(value: str) -> timedelta:
    """``"30m"`` as a timedelta; ValueError names the accepted form."""
    found = re.match(DURATION_PATTERN, value)
    if found is None:
        raise ValueError(
            f"after must be a whole number with a unit s, m, h or d (e.g. 30m, 4h), not {value!r}"
        )
    span = timedelta(seconds=int(found.group(1)) * _UNITS[found.group(2)])
    if span > MAX_AFTER:
        raise ValueError(f"after may be at most {MAX_AFTER.days} days, not {value!r}")
    return span


class Step(BaseModel):
    """One step: the first has only its channel; each later one ``after`` and ``if``."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    channel: str
    after: str | None = Field(default=None, description="How long after the first step: 30s, 30m, 4h, 1d.")
    if_: Condition | None = Field(
        default=None, alias="if", description="What must still hold of the first step's message."
    )

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        return Channel.parse(value).value

    @field_validator("after")
    @classmethod
    def _after(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @property
    def delay(self) -> timedelta:
        return parse_duration(self.after) if self.after else timedelta(0)

    def stored(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class Later(NamedTuple):
    """A later step being created: the escalation's first message and the one just before."""

    first_id: str
    previous_id: str
    step: Step


def check(steps: list[Step], allowed: Iterable[Channel]) -> list[Step]:
    """The steps if they make an escalation; ValueError says what is wrong with them."""
    names = {c.value for c in allowed}
    if len(steps) < 2:
        raise ValueError("an escalation needs at least two steps; for one channel give channels")
    if len(steps) > MAX_STEPS:
        raise ValueError(f"an escalation has at most {MAX_STEPS} steps")
    first = steps[0]
    if first.after is not None or first.if_ is not None:
        raise ValueError("the first step goes at once: give it no after and no if")
    seen: set[str] = set()
    previous = timedelta(0)
    for number, step in enumerate(steps, start=1):
        if step.channel not in names:
            raise ValueError(f"step {number}: rules send on {', '.join(sorted(names))}")
        if step.channel in seen:
            raise ValueError(f"step {number}: each channel once per escalation ({step.channel} repeats)")
        seen.add(step.channel)
        if number > 1:
            if step.after is None or step.if_ is None:
                raise ValueError(f"step {number}: a later step needs after (e.g. 30m) and if")
            if step.delay < previous:
                raise ValueError(f"step {number}: steps are in order of their after")
            previous = step.delay
            if step.if_ == "notRead" and first.channel != Channel.IN_APP.value:
                raise ValueError(f"step {number}: notRead needs an in_app first step")
    return steps


def load(stored: Sequence[dict[str, Any]] | None) -> list[Step]:
    return [Step.model_validate(s) for s in stored or []]


def unmet(condition: str, due: Any) -> str | None:
    """Why ``condition`` no longer holds, or None if it still does. ``due``: the step's row
    with the first step's notification (``read_at``, ``deleted_at``) and the state of the step
    just before (``status``, ``sent_at``, ``delivered_at``)."""
    if due.status == Status.CANCELED.value:
        return "the step before was canceled"
    if condition == "notRead":
        # Deleting a notification unread dismisses it: its reader has seen it.
        if due.read_at is not None:
            return f"read at {due.read_at.isoformat()}"
        return None if due.deleted_at is None else f"dismissed at {due.deleted_at.isoformat()}"
    if condition == "notDelivered":
        if due.status in (Status.SENT.value, Status.DELIVERED.value):
            at = due.delivered_at or due.sent_at
            return f"{due.status} at {at.isoformat() if at else 'an unknown time'}"
        return None
    if due.status == Status.FAILED.value:
        return None
    return f"the step before is {due.status}, not failed"


def settle_due(session: Session, channels: Sequence[Channel], now: datetime) -> int:
    """Cancel the steps on ``channels`` due by ``now`` whose condition no longer holds (with
    the reason); the ones that still hold stay due for the scheduler to publish in the same
    transaction, with the same ``now``: every step it publishes was checked, however many
    are due at once. Returns how many were canceled."""
    step, before = aliased(NotificationLog), aliased(NotificationLog)
    canceled, after = 0, ""
    while True:
        rows = session.execute(
            select(
                step.id,
                step.escalation_if,
                before.status,
                before.sent_at,
                before.delivered_at,
                Notification.read_at,
                Notification.deleted_at,
            )
            # Rows from before revision 0014 name no step before: theirs is the first.
            .join(before, before.id == func.coalesce(step.escalation_after, step.escalation_of))
            .outerjoin(Notification, Notification.notification_log_id == step.escalation_of)
            .where(
                step.escalation_of.is_not(None),
                step.status == Status.SCHEDULED.value,
                step.due_at <= now,
                step.channel.in_([c.value for c in channels]),
                step.id > after,
            )
            .order_by(step.id)
            .limit(SETTLE_BATCH)
            .with_for_update(of=step, skip_locked=True)
        ).all()
        for row in rows:
            reason = unmet(row.escalation_if or "", row)
            if reason is not None:
                done = tracking.cancel_where(
                    session.connection(), NotificationLog.id == row.id, reason=reason, code=NOT_NEEDED_CODE
                )
                canceled += len(done)
        if len(rows) < SETTLE_BATCH:
            return canceled
        after = rows[-1].id


def cancel_on_read(
    connection: Connection, first_ids: Sequence[str], at: datetime, *, how: str = "read"
) -> list[str]:
    """Cancel the pending steps escalating from the messages ``first_ids``, whose in-app
    notifications were just read (or, ``how="dismissed"``, deleted unread); the canceled ids."""
    if not first_ids:
        return []
    return tracking.cancel_where(
        connection,
        NotificationLog.escalation_of.in_(list(first_ids)),
        reason=f"{how} at {at.isoformat()}",
        code=READ_CODE,
    )


def steps_of(session: Session, event_id: str) -> list[dict[str, Any]]:
    """The escalations an event started, each with its steps and where they stand."""
    logs = list(
        session.scalars(
            select(NotificationLog)
            .where(NotificationLog.event_id == event_id)
            .order_by(NotificationLog.created_at, NotificationLog.id)
        )
    )
    firsts = {log.escalation_of for log in logs if log.escalation_of}
    by_id = {log.id: log for log in logs}
    shown = []
    for first_id in sorted(firsts):
        first = by_id.get(first_id)
        later = sorted(
            (log for log in logs if log.escalation_of == first_id),
            key=lambda log: (log.send_at or log.created_at, log.id),
        )
        shown.append(
            {"firstMessageId": first_id, "steps": [step_view(s) for s in ([first] if first else []) + later]}
        )
    return shown


def step_view(row: NotificationLog) -> dict[str, Any]:
    return {
        "messageId": row.id,
        "channel": row.channel,
        "status": row.status,
        "if": row.escalation_if,
        "sendAt": row.send_at.isoformat() if row.send_at else None,
        "reason": row.last_error if row.status == Status.CANCELED.value else None,
    }
