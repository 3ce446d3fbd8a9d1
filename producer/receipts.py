"""Receipts: what a provider says about a message after it accepted it.

``sent`` means the provider took the message; a receipt says what happened next. Each is
kept as a row (``message_receipts``) in one vocabulary, the provider's own word or code
beside it, and moves the message's status forward, never back:

- ``delivered`` (and ``seen`` or ``read``, or a person's ``opened`` or ``clicked``, which
  imply it) turns a ``sent`` message ``delivered``; it never touches a message that already
  ended ``failed``, so a late ``delivered`` cannot overwrite a bounce; a mail scanner's open
  or click (:mod:`producer.engagement`) is kept apart and moves nothing;
- ``undelivered``, and a hard ``bounced`` (the mailbox does not exist), turn a ``sent`` or
  ``delivered`` message ``failed``, with the provider's code as ``errorCode``: the final
  word on it; a soft bounce and a ``complained`` are kept and change no status;
- ``accepted`` (handed on to the carrier) and ``unsubscribed`` (the recipient used the
  email's one-click link, :mod:`producer.unsubscribe`) are kept, and change nothing.

An in-app message is ``delivered`` as soon as it is in the inbox, so what its user does there
(:func:`record_inbox`: ``seen``, ``read``, ``clicked``) is kept and moves nothing.

Each new receipt is also an event for the webhook endpoints subscribed to it:
``message.<type>`` (``message.delivered``, ``message.undelivered``, ``message.unsubscribed``
…; ``message.*`` for all), created with their relay markers in the receipt's transaction, so
a receipt kept is a receipt forwarded even if the broker is away when it comes.

A receipt heard twice (a provider's retry, a replayed callback) is recorded once: the
second answers as a repeat and changes nothing. A receipt for a message still on its way
(its worker has not yet recorded ``sent``) is kept and moves nothing; the status it would
have set is then the provider's next receipt's to set.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from producer.enqueue import enqueuer_for
from shared import relay
from shared.channels import Channel, Status
from shared.config import Settings
from shared.db.models import MessageReceipt, NotificationLog, WebhookConfiguration, utcnow
from shared.db.rls import act_as_system
from shared.webhooks.fanout import active_endpoints, fan_out

ReceiptType = Literal[
    "accepted",
    "delivered",
    "undelivered",
    "bounced",
    "complained",
    "opened",
    "clicked",
    "seen",
    "read",
    "unsubscribed",
]

#: What a user does to an in-app message in their inbox.
InboxAction = Literal["seen", "read", "clicked"]

#: The ``code`` of each inbox receipt: a click in the user's own inbox is a person's, in the
#: words email tracking uses for one.
INBOX_CODES: dict[InboxAction, str] = {"seen": "seen", "read": "read", "clicked": "human"}


@dataclass(frozen=True)
class Receipt:
    message_id: str
    type: ReceiptType
    provider: str
    #: The provider's own word or code (``undelivered 30003``).
    code: str | None
    #: Unique per receipt: the same one heard again has the same key.
    dedupe_key: str
    detail: str | None = None
    occurred_at: datetime | None = None
    #: Set when this receipt fails the message (``undelivered``, a hard bounce): what its
    #: ``errorCode`` becomes.
    error_code: str | None = None

    @property
    def confirms_delivery(self) -> bool:
        """Whether it proves the message arrived: a delivery report, or a person seeing,
        reading, opening or clicking it (a mail scanner's open, ``code`` ``bot …``, proves
        nothing)."""
        if self.type in ("delivered", "seen", "read"):
            return True
        return self.type in ("opened", "clicked") and self.code == "human"


@dataclass(frozen=True)
class Of:
    """The message a receipt is about, as its caller already read it."""

    user_id: str | None
    channel: str


def record(
    session: Session,
    settings: Settings,
    receipt: Receipt,
    message: Of,
    endpoints: Sequence[WebhookConfiguration] | None = None,
) -> list[str]:
    """Keep ``receipt``, move its message's status and forward it to the subscribed webhook
    endpoints; the forwarding messages' ids (to publish after the commit with
    :func:`publish_forwarded`). A receipt heard before changes nothing and forwards nothing."""
    return record_many(session, settings, [(receipt, message)], endpoints)[0]


def record_many(
    session: Session,
    settings: Settings,
    items: Sequence[tuple[Receipt, Of]],
    endpoints: Sequence[WebhookConfiguration] | None = None,
) -> list[list[str]]:
    """:func:`record` for many receipts in the transaction under way, in one insert: per item
    the forwarding messages' ids (none for a receipt heard before, in an earlier transaction
    or earlier in ``items``)."""
    if not items:
        return []
    now = utcnow()
    rows = [
        MessageReceipt(
            id=str(uuid.uuid4()),
            message_id=receipt.message_id,
            user_id=of.user_id,
            type=receipt.type,
            code=receipt.code,
            detail=receipt.detail,
            provider=receipt.provider,
            dedupe_key=receipt.dedupe_key,
            occurred_at=receipt.occurred_at or now,
            created_at=now,
        )
        for receipt, of in items
    ]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    columns = [c.name for c in MessageReceipt.__table__.columns]
    statement = dialect.insert(MessageReceipt).on_conflict_do_nothing(index_elements=["dedupe_key"])
    kept = set(
        session.scalars(
            statement.returning(MessageReceipt.id),
            [{name: getattr(row, name) for name in columns} for row in rows],
        )
    )
    if kept and endpoints is None:
        endpoints = active_endpoints(session)
    fresh = [(receipt, of, row) for (receipt, of), row in zip(items, rows, strict=True) if row.id in kept]
    _confirm_delivery(
        session, [(r.message_id, row.occurred_at) for r, _, row in fresh if r.confirms_delivery]
    )
    for receipt, _, row in fresh:
        if not receipt.confirms_delivery:
            _advance(session, receipt, row.occurred_at)
    forwarded = {row.id: _forward(session, settings, row, of.channel, endpoints) for _, of, row in fresh}
    return [forwarded.get(row.id, []) for row in rows]


def _confirm_delivery(session: Session, arrived: Sequence[tuple[str, datetime]]) -> None:
    """Turn the ``sent`` messages among ``arrived`` ``delivered``, in one executemany (the
    driver pipelines it: one round trip for a burst of opens)."""
    if not arrived:
        return
    t: Table = NotificationLog.__table__  # type: ignore[assignment]
    statement = (
        update(t)
        .where(t.c.id == bindparam("b_id"), t.c.status == Status.SENT.value)
        .values(status=Status.DELIVERED.value, delivered_at=bindparam("b_at"), updated_at=bindparam("b_now"))
    )
    now = utcnow()
    session.connection().execute(statement, [{"b_id": m, "b_at": at, "b_now": now} for m, at in arrived])


@dataclass(frozen=True)
class Acted:
    """An in-app message its user saw, read or clicked in their inbox; ``detail`` is where a
    click led."""

    message_id: str
    action: InboxAction
    detail: str | None = None

    def receipt(self) -> Receipt:
        return Receipt(
            message_id=self.message_id,
            type=self.action,
            provider="inbox",
            code=INBOX_CODES[self.action],
            # One per message and action: the inbox reporting it again records nothing.
            dedupe_key=f"inbox:{self.message_id}:{self.action}",
            detail=self.detail,
        )


def record_inbox(
    connection: Connection, settings: Settings, user_id: str, acts: Sequence[Acted]
) -> list[str]:
    """The receipts of what ``user_id`` just did to in-app messages in their inbox, kept and
    forwarded in order in the transaction under way on ``connection`` (the one that marked
    the notifications); the forwarding messages' ids, as :func:`record` returns them.

    The rest of that transaction acts as the system: forwarding reads the webhook endpoints,
    which belong to no user."""
    if not acts:
        return []
    act_as_system(connection)
    forwarded: list[str] = []
    of = Of(user_id, Channel.IN_APP.value)
    # rollback_only: committing this session leaves the caller's transaction to the caller.
    with Session(bind=connection, join_transaction_mode="rollback_only") as session:
        endpoints = active_endpoints(session)  # once for all of them
        for ids in record_many(session, settings, [(act.receipt(), of) for act in acts], endpoints):
            forwarded += ids
        session.commit()
    return forwarded


def _forward(
    session: Session,
    settings: Settings,
    row: MessageReceipt,
    channel: str,
    endpoints: Sequence[WebhookConfiguration] | None,
) -> list[str]:
    forwarded = fan_out(
        session,
        settings,
        endpoints=endpoints,
        event_id=None,
        key=f"receipt:{row.id}",
        event_type=f"message.{row.type}",
        data={"messageId": row.message_id, "channel": channel, "userId": row.user_id, **view(row)},
        user_id=row.user_id,
        occurred_at=row.occurred_at,
    )
    queue = Channel.WEBHOOK.queue_name
    relay.pend(session.connection(), [relay.Pending(i, relay.MESSAGE, queue) for i in forwarded])
    return forwarded


async def publish_forwarded(settings: Settings, message_ids: list[str]) -> None:
    """Publish the webhook messages :func:`record` created, once its transaction committed."""
    await enqueuer_for(settings).publish_written([(Channel.WEBHOOK, i) for i in message_ids])


def _advance(session: Session, receipt: Receipt, at: datetime) -> None:
    this = NotificationLog.id == receipt.message_id
    if receipt.confirms_delivery:
        session.execute(
            update(NotificationLog)
            .where(this, NotificationLog.status == Status.SENT.value)
            .values(status=Status.DELIVERED.value, delivered_at=at, updated_at=utcnow())
        )
    elif receipt.error_code is not None:
        said = f"{receipt.provider} reports the message {receipt.type} ({receipt.code})" + (
            f": {receipt.detail}" if receipt.detail else ""
        )
        session.execute(
            update(NotificationLog)
            .where(this, NotificationLog.status.in_([Status.SENT.value, Status.DELIVERED.value]))
            .values(
                status=Status.FAILED.value,
                error_code=receipt.error_code,
                last_error=said[:1000],
                updated_at=utcnow(),
            )
        )


def of_message(session: Session, message_id: str) -> list[dict[str, Any]]:
    """The message's receipts as the HTTP API shows them, in the order they happened."""
    rows = session.scalars(
        select(MessageReceipt)
        .where(MessageReceipt.message_id == message_id)
        .order_by(MessageReceipt.occurred_at, MessageReceipt.created_at)
    )
    return [view(r) for r in rows]


def view(row: MessageReceipt) -> dict[str, Any]:
    return {
        "type": row.type,
        "code": row.code,
        "provider": row.provider,
        "detail": row.detail,
        "occurredAt": row.occurred_at.isoformat(),
    }
