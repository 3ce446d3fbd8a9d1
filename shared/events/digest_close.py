"""Closing digests: every due open bucket becomes one message per channel of its rule.

Called by the events workers' closer (``workers/digests.py``) on every tick. A bucket is
claimed with ``FOR UPDATE SKIP LOCKED`` and marked closed in the transaction that creates its
messages, so two workers closing side by side send each digest once; a bucket that an event is
joining at that moment stays locked by the event's transaction and is skipped until the next
tick, with that event in it. The messages' ids are published after the commit, and the
closing transaction writes their relay markers (:mod:`shared.relay`) as accepting a message
does: a closer that dies before the publish leaves them for the scheduler's relay, which
publishes them within PUBLISH_RELAY_AFTER. Closed digests are kept a while (an event's status
shows the digest it went into), then purged.

Each digest's messages are made under a savepoint: one that cannot be made (a rule naming a
channel this version does not know; a bug) ends ``failed`` with the reason, alone, instead of
rolling back the batch and coming back first on every tick. The database failing (a lost
connection, a deadlock) still fails the batch, which the next tick takes again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from shared import relay
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import DigestBucket, DigestItem, EventLog, NotificationRule, utcnow
from shared.events import digests, processing
from shared.events.digests import CLOSED, FAILED, OPEN, item_view
from shared.logging import get_logger

log = get_logger(__name__)

#: Events a digest's template sees at most (``count`` still tells how many there were): a
#: busy key must not make a message too large to store or render.
MAX_RENDERED_EVENTS = 100


def close_due(session: Session, settings: Settings, *, limit: int) -> list[tuple[Channel, str]]:
    """Close up to ``limit`` due buckets in ``session`` (one transaction: the caller commits,
    then publishes the returned messages and removes their relay markers)."""
    now = utcnow()
    ids = list(
        session.scalars(
            select(DigestBucket.id)
            .where(DigestBucket.state == OPEN, DigestBucket.closes_at <= now)
            .order_by(DigestBucket.closes_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if not ids:
        return []
    session.execute(
        update(DigestBucket)
        .where(DigestBucket.id.in_(ids), DigestBucket.state == OPEN)
        .values(state=CLOSED, closed_at=now)
    )
    publish: list[tuple[Channel, str]] = []
    for bucket in session.scalars(select(DigestBucket).where(DigestBucket.id.in_(ids))).all():
        try:
            with session.begin_nested():
                publish.extend(_send(session, settings, bucket))
        except OperationalError:
            raise
        except Exception as exc:
            log.exception("digest.close_failed", bucket_id=bucket.id, rule_id=bucket.rule_id)
            bucket.state, bucket.error = FAILED, f"{type(exc).__name__}: {exc}"[:1000]
    relay.pend(session.connection(), [relay.Pending(i, relay.MESSAGE, c.queue_name) for c, i in publish])
    log.info("digest.closed", buckets=len(ids), messages=len(publish))
    return publish


def purge_closed(session: Session, *, closed_before: datetime, limit: int) -> int:
    """Remove up to ``limit`` digests that closed before ``closed_before``, with their items;
    returns how many. By ``closes_at`` (a closed digest closed at or after it), which the
    ``(state, closes_at)`` index finds without reading the open ones."""
    ids = list(
        session.scalars(
            select(DigestBucket.id)
            .where(DigestBucket.state.in_((CLOSED, FAILED)), DigestBucket.closes_at < closed_before)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if ids:
        session.execute(delete(DigestItem).where(DigestItem.bucket_id.in_(ids)))
        session.execute(delete(DigestBucket).where(DigestBucket.id.in_(ids)))
    return len(ids)


def _item(row: DigestItem) -> dict[str, Any]:
    return item_view(row.event_id, row.occurred_at, row.data)


def _send(session: Session, settings: Settings, bucket: DigestBucket) -> list[tuple[Channel, str]]:
    rule = session.get(NotificationRule, bucket.rule_id)
    items = list(
        session.scalars(
            select(DigestItem)
            .where(DigestItem.bucket_id == bucket.id)
            .order_by(DigestItem.occurred_at, DigestItem.id)
        )
    )
    if rule is None or not items:
        return []
    last = items[-1]
    rendered = [_item(row) for row in items[-MAX_RENDERED_EVENTS:]]
    data = {
        **last.data,
        "events": rendered,
        "count": len(items),
        "first": _item(items[0]),
        "last": rendered[-1],
        "digest": {"id": bucket.id, "openedAt": bucket.created_at.isoformat()},
    }
    # Unsaved: it only carries what a message is made from. The last event's id keeps the
    # message linked to an event of the digest (and makes its idempotency key unique).
    stand_in = EventLog(
        id=last.event_id,
        event_type=bucket.event_type,
        user_id=bucket.user_id,
        data=data,
        created_at=last.occurred_at,
    )
    choices, _zone = digests.user_choices(session, bucket.user_id)
    held = digests.off_at_close(choices, bucket.event_type)
    publish = []
    for name in rule.channels:
        channel = Channel(name)
        message_id, _created, now = processing.digest_message(
            session, settings, stand_in, rule, channel, held
        )
        if now:
            publish.append((channel, message_id))
    return publish
