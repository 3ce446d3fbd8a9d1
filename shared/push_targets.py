"""The devices push notifications reach (``push_targets``): browsers' push subscriptions and
apps' FCM / APNs device tokens, registered per user.

A device belongs to whoever registered it last (``(kind, token)`` is unique): a shared
browser or a phone handed on stops receiving the previous user's notifications. Rows are
written in the system scope for that reason (the previous owner's row is not visible to the
new owner), always for the user the caller proved to be. A push service that says a device
is gone (404/410, ``UNREGISTERED``, ``BadDeviceToken``) has its row removed by the push
worker (:func:`prune`).
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal, Self, cast
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel
from sqlalchemy import Connection, Table, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.db import keyset
from shared.db.models import PushTargetRow, utcnow
from shared.errors import NotFound
from shared.messages import URL_MAX_CHARS, check_http_url
from shared.payloads import PushTarget

#: Most devices one user may register; the oldest goes when a new one comes past it.
MAX_TARGETS_PER_USER = 50
#: FCM registration tokens: URL-safe characters with ``:``, about 160 in practice.
_FCM_TOKEN = re.compile(r"^[A-Za-z0-9_:\-]{20,4096}$")
#: APNs device tokens: 32 bytes, hex (Apple reserves the right to lengthen them).
_APNS_TOKEN = re.compile(r"^[0-9a-fA-F]{64,200}$")


def _b64url_bytes(value: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, TypeError):
        raise ValueError(f"{what} must be base64url") from None


class SubscriptionKeys(BaseModel):
    p256dh: str = Field(max_length=200)
    auth: str = Field(max_length=100)

    @field_validator("p256dh")
    @classmethod
    def _p256dh(cls, value: str) -> str:
        raw = _b64url_bytes(value, "keys.p256dh")
        if len(raw) != 65 or raw[0] != 4:
            raise ValueError("keys.p256dh must be an uncompressed P-256 public key (65 bytes, base64url)")
        return value

    @field_validator("auth")
    @classmethod
    def _auth(cls, value: str) -> str:
        if len(_b64url_bytes(value, "keys.auth")) != 16:
            raise ValueError("keys.auth must be the 16-byte authentication secret (base64url)")
        return value


class SubscriptionInput(BaseModel):
    """A browser's ``PushSubscription.toJSON()``, as the page hands it over."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    endpoint: str = Field(max_length=URL_MAX_CHARS)
    keys: SubscriptionKeys
    label: str | None = Field(default=None, max_length=255)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return check_http_url(value)


class DeviceInput(BaseModel):
    """An app's device token: ``platform`` android (FCM) or ios (APNs); an iOS app that goes
    through Firebase says ``"service": "fcm"``."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    platform: Literal["android", "ios"]
    token: str = Field(min_length=1, max_length=4096)
    service: Literal["fcm", "apns"] | None = None
    #: The app's bundle id / package name (the APNs topic); defaults to APNS_TOPIC.
    app_id: str | None = Field(default=None, max_length=255, pattern=r"^[A-Za-z0-9._-]+$")
    label: str | None = Field(default=None, max_length=255)

    @property
    def kind(self) -> str:
        return self.service or ("fcm" if self.platform == "android" else "apns")

    @model_validator(mode="after")
    def _token_fits(self) -> Self:
        if self.service == "apns" and self.platform == "android":
            raise ValueError("APNs reaches iOS devices only")
        pattern = _FCM_TOKEN if self.kind == "fcm" else _APNS_TOKEN
        if not pattern.match(self.token):
            shape = "an FCM registration token" if self.kind == "fcm" else "an APNs device token (hex)"
            raise ValueError(f"token is not {shape}")
        return self


def _upsert(session: Session, values: dict[str, Any]) -> str:
    table = PushTargetRow.__table__
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    moved = {k: values[k] for k in ("user_id", "p256dh", "auth", "app_id", "label", "created_at")}
    statement = (
        dialect.insert(table)
        .values(**values)
        .on_conflict_do_update(index_elements=["kind", "token"], set_=moved)
        .returning(table.c.id)
    )
    return str(session.execute(statement).scalar_one())


def _keep_newest(session: Session, user_id: str) -> None:
    stale = select(PushTargetRow.id).where(PushTargetRow.user_id == user_id)
    stale = stale.order_by(PushTargetRow.created_at.desc(), PushTargetRow.id).offset(MAX_TARGETS_PER_USER)
    ids = list(session.scalars(stale))
    if ids:
        session.execute(delete(PushTargetRow).where(PushTargetRow.id.in_(ids)))


def register(session: Session, user_id: str, given: SubscriptionInput | DeviceInput) -> PushTargetRow:
    """Save a device for ``user_id`` (again: it moves to them and is refreshed). ``session``
    acts as the system (see the module's docstring)."""
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "user_id": user_id,
        "label": given.label,
        "created_at": utcnow(),
        "p256dh": None,
        "auth": None,
        "app_id": None,
    }
    if isinstance(given, SubscriptionInput):
        values.update(kind="web", token=given.endpoint, p256dh=given.keys.p256dh, auth=given.keys.auth)
    else:
        values.update(kind=given.kind, token=given.token, app_id=given.app_id)
    target_id = _upsert(session, values)
    _keep_newest(session, user_id)
    row = session.get(PushTargetRow, target_id, populate_existing=True)
    assert row is not None
    return row


#: The order devices are listed in: oldest first, by columns no update changes.
LISTED = keyset.Keyset((PushTargetRow.created_at, PushTargetRow.id))


def owned_page(
    session: Session, user_id: str, after: keyset.Position | None, limit: int
) -> tuple[list[PushTargetRow], keyset.Position | None]:
    query = select(PushTargetRow).where(PushTargetRow.user_id == user_id)
    return keyset.page(session, query, LISTED, after, limit)


def remove(session: Session, user_id: str, target_id: str) -> None:
    deleted = session.execute(
        delete(PushTargetRow).where(PushTargetRow.id == target_id, PushTargetRow.user_id == user_id)
    )
    if not deleted.rowcount:  # type: ignore[attr-defined]
        raise NotFound(f"user {user_id!r} has no device {target_id!r}")


_TABLE = cast(Table, PushTargetRow.__table__)
_OF_USERS = (
    select(_TABLE)
    .where(_TABLE.c.user_id.in_(bindparam("users", expanding=True)))
    .order_by(_TABLE.c.created_at, _TABLE.c.id)
)


def for_users(connection: Connection, user_ids: Sequence[str]) -> dict[str, list[PushTarget]]:
    """Every device of each of ``user_ids``, oldest first, in one statement (the push pool
    reads the devices of all the messages in flight together)."""
    found: dict[str, list[PushTarget]] = {user: [] for user in user_ids}
    for r in connection.execute(_OF_USERS, {"users": list(set(user_ids))}):
        found.setdefault(r.user_id, []).append(
            PushTarget(
                id=r.id,
                kind=r.kind,
                token=r.token,
                p256dh=r.p256dh,
                auth=r.auth,
                app_id=r.app_id,
                last_success_at=r.last_success_at,
            )
        )
    return found


def prune(connection: Connection | Session, target_ids: Iterable[str]) -> int:
    ids = list(target_ids)
    if not ids:
        return 0
    deleted = connection.execute(delete(_TABLE).where(_TABLE.c.id.in_(ids)))
    return int(deleted.rowcount)  # type: ignore[attr-defined]


def mark_success(
    connection: Connection | Session, target_ids: Sequence[str], when: datetime | None = None
) -> None:
    if target_ids:
        connection.execute(
            update(_TABLE).where(_TABLE.c.id.in_(list(target_ids))).values(last_success_at=when or utcnow())
        )


def masked_token(row: PushTargetRow) -> str:
    """What the API shows of a device: a subscription's push service (its endpoint's path is a
    capability), a token's first characters."""
    if row.kind == "web":
        parts = urlsplit(row.token)
        return f"{parts.scheme}://{parts.netloc}/…"
    return row.token[:8] + "…"


def view(row: PushTargetRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "userId": row.user_id,
        "kind": row.kind,
        "token": masked_token(row),
        "appId": row.app_id,
        "label": row.label,
        "createdAt": row.created_at.isoformat(),
        "lastSuccessAt": row.last_success_at.isoformat() if row.last_success_at else None,
    }
