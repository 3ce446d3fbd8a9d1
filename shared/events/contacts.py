"""Where users are reached (``user_contacts``), as the host application tells us with
``PUT /api/users/{id}/contacts``. Event rules send to these, unless the event's own data
names an address (``data.email`` / ``data.phone``).

Chat webhook URLs are credentials: they are stored sealed and shown masked (scheme and host,
:func:`shared.chat_targets.mask`). Giving the masked form back (a PUT of what GET showed, or
a PATCH that leaves them out) keeps the stored URL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from sqlalchemy.orm import Session

from shared import chat_targets
from shared.db.models import UserContact, utcnow
from shared.messages import SLACK_CHANNEL_PATTERN, check_http_url, normalize_email, normalize_phone
from shared.templates.store import LOCALE_MAX_CHARS, LOCALE_PATTERN

#: What stands for a stored webhook URL in what the API shows (and takes back unchanged).
MASK_SUFFIX = chat_targets.MASK_SUFFIX


class ContactInput(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    email: str | None = None
    phone: str | None = None
    locale: str | None = Field(default=None, pattern=LOCALE_PATTERN, max_length=LOCALE_MAX_CHARS)
    #: The user's Slack member id (``U…``): the bot messages them directly.
    slack_user_id: str | None = Field(default=None, pattern=SLACK_CHANNEL_PATTERN, max_length=32)
    slack_webhook_url: str | None = None
    teams_webhook_url: str | None = None

    @field_validator("slack_webhook_url", "teams_webhook_url")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        if not value or value.endswith(MASK_SUFFIX):
            return value or None  # the masked form keeps what is stored
        return check_http_url(value)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return normalize_email(value) if value else None

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return normalize_phone(value) if value else None


def put(
    session: Session, user_id: str, given: ContactInput, *, encryption_keys: Sequence[str] = ()
) -> UserContact:
    """Replace the user's contacts with ``given`` (absent fields are cleared); webhook URLs
    are sealed with ``encryption_keys`` (WEBHOOK_ENCRYPTION_KEYS)."""
    now = utcnow()
    row = session.get(UserContact, user_id)
    if row is None:
        row = UserContact(user_id=user_id, created_at=now)
        session.add(row)
    row.email, row.phone, row.locale, row.updated_at = given.email, given.phone, given.locale, now
    row.slack_user_id = given.slack_user_id
    row.slack_webhook_url = chat_targets.seal_or_keep(
        given.slack_webhook_url, row.slack_webhook_url, "slackWebhookUrl", encryption_keys
    )
    row.teams_webhook_url = chat_targets.seal_or_keep(
        given.teams_webhook_url, row.teams_webhook_url, "teamsWebhookUrl", encryption_keys
    )
    session.flush()
    return row


def get(session: Session, user_id: str, *, for_update: bool = False) -> UserContact | None:
    """The user's contacts; ``for_update`` locks them until the transaction ends."""
    return session.get(UserContact, user_id, with_for_update=for_update)


def document(row: UserContact | None, encryption_keys: Sequence[str] = ()) -> dict[str, Any]:
    """The contacts as the :class:`ContactInput` that would save them (none: empty)."""
    if row is None:
        return {}
    out = view(row, encryption_keys)
    del out["userId"]
    return out


def view(row: UserContact, encryption_keys: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "userId": row.user_id,
        "email": row.email,
        "phone": row.phone,
        "locale": row.locale,
        "slackUserId": row.slack_user_id,
        "slackWebhookUrl": chat_targets.shown(row.slack_webhook_url, encryption_keys),
        "teamsWebhookUrl": chat_targets.shown(row.teams_webhook_url, encryption_keys),
    }
