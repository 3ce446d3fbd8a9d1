"""Where users are reached (``user_contacts``), as the host application tells us with
``PUT /api/users/{id}/contacts``. Event rules send to these, unless the event's own data
names an address (``data.email`` / ``data.phone``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from sqlalchemy.orm import Session

from shared.db.models import UserContact, utcnow
from shared.messages import normalize_email, normalize_phone
from shared.templates.store import LOCALE_MAX_CHARS, LOCALE_PATTERN


class ContactInput(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    email: str | None = None
    phone: str | None = None
    locale: str | None = Field(default=None, pattern=LOCALE_PATTERN, max_length=LOCALE_MAX_CHARS)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return normalize_email(value) if value else None

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return normalize_phone(value) if value else None


def put(session: Session, user_id: str, given: ContactInput) -> UserContact:
    """Replace the user's contacts with ``given`` (absent fields are cleared)."""
    now = utcnow()
    row = session.get(UserContact, user_id)
    if row is None:
        row = UserContact(user_id=user_id, created_at=now)
        session.add(row)
    row.email, row.phone, row.locale, row.updated_at = given.email, given.phone, given.locale, now
    session.flush()
    return row


def get(session: Session, user_id: str, *, for_update: bool = False) -> UserContact | None:
    """The user's contacts; ``for_update`` locks them until the transaction ends."""
    return session.get(UserContact, user_id, with_for_update=for_update)


def document(row: UserContact | None) -> dict[str, Any]:
    """The contacts as the :class:`ContactInput` that would save them (none: empty)."""
    return {} if row is None else {"email": row.email, "phone": row.phone, "locale": row.locale}


def view(row: UserContact) -> dict[str, Any]:
    return {"userId": row.user_id, "email": row.email, "phone": row.phone, "locale": row.locale}
