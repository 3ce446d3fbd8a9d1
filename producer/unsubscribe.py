"""What a one-click unsubscribe does (RFC 8058): the link names one email; using it turns that
email's user off what it was about.

An email sent for an event type (by a rule) turns email off for that type only, the switch
``PATCH /api/notifications/preferences`` sets as ``{"events": {type: {"email": false}}}``;
an email sent directly turns the user's email switch off (critical messages ignore both,
and carry no link). The message gets an ``unsubscribed`` receipt. Using the link again
changes nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from producer import receipts
from shared import unsubscribe
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import NotificationLog, UserNotificationPreference, utcnow
from shared.db.rls import system_scope, user_scope
from shared.errors import NotFound


@dataclass(frozen=True)
class Subject:
    """What a link turns off: email for ``user_id``, for ``event_type`` or (None) for all."""

    message_id: str
    user_id: str
    event_type: str | None

    @property
    def what(self) -> str:
        return f"{self.event_type} emails" if self.event_type else "all emails that are not critical"


def subject_of(settings: Settings, token: str) -> Subject:
    """The email a link names; :class:`~shared.unsubscribe.InvalidLink` (or
    :class:`~shared.unsubscribe.ExpiredLink`) for a link we did not make or that is too
    old, :class:`NotFound` when its message is gone."""
    message_id = unsubscribe.message_of(settings, token)
    # As the system: the link's bearer is whoever the email reached, not a signed-in user.
    with system_scope(settings.database_url) as session:
        row = session.get(NotificationLog, message_id)
        if row is None or row.channel != Channel.EMAIL.value or row.user_id is None:
            raise NotFound("the email this link was sent with no longer exists")
        return Subject(message_id, row.user_id, row.event_type)


def apply(settings: Settings, subject: Subject) -> list[str]:
    """Turn the preference off and record the receipt, in the user's own transaction; the ids
    of the webhook messages that forward the receipt (to publish after the commit)."""
    try:
        return _apply(settings, subject)
    except IntegrityError:
        return _apply(settings, subject)  # a concurrent first save created the row: apply on top


def _apply(settings: Settings, subject: Subject) -> list[str]:
    with user_scope(settings.database_url, subject.user_id) as session:
        row = session.get(UserNotificationPreference, subject.user_id, with_for_update=True)
        if row is None:
            row = UserNotificationPreference(
                user_id=subject.user_id, created_at=utcnow(), event_preferences={}
            )
            session.add(row)
        if subject.event_type:
            switches = dict(row.event_preferences or {})
            switches[subject.event_type] = {
                **switches.get(subject.event_type, {}),
                Channel.EMAIL.value: False,
            }
            row.event_preferences = switches
        else:
            row.email_enabled = False
        row.updated_at = utcnow()
        session.flush()
        return receipts.record(
            session,
            settings,
            receipts.Receipt(
                message_id=subject.message_id,
                type="unsubscribed",
                provider="list-unsubscribe",
                code="one-click",
                dedupe_key=f"unsubscribe:{subject.message_id}",
                detail=f"turned off {subject.what}",
            ),
            receipts.Of(subject.user_id, Channel.EMAIL.value),
        )
