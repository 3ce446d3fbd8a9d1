"""Webhook endpoints (``webhook_configurations``): validation, storage and secrets.

An endpoint's signing secret is generated here (``whsec_`` + base64 of 32 random bytes), is
shown to the caller only when created or regenerated, and is stored sealed
(:mod:`shared.webhooks.secretbox`). Regenerating keeps the previous secret signing too until the
grace period ends, so receivers rotate without downtime (:func:`signing_secrets`).

The endpoint's custom headers are secrets too (they usually carry the receiver's
credential): each value is stored sealed the same way, shown by name with a masked value
(:func:`shared.webhooks.headers.masked`), and unsealed only to send (:func:`custom_headers`).
A client that sends back the headers as it read them keeps the values they stand for.
"""

from __future__ import annotations

import base64
import secrets as random_secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic.alias_generators import to_camel
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import netguard, tracking
from shared.channels import Channel, Status
from shared.config import Settings
from shared.db import keyset
from shared.db.models import NotificationLog, WebhookConfiguration, utcnow
from shared.errors import ConfigError, NotFound, ValidationError
from shared.messages import check_http_url, normalize_email, single_line
from shared.webhooks import secretbox
from shared.webhooks.headers import HEADER_NAME, MASK, RESERVED_HEADERS, masked
from shared.webhooks.ordering import CONFIGURATION_FIELD
from shared.webhooks.settings import parse_schedule
from shared.webhooks.signing import SECRET_PREFIX

#: Random bytes in a generated secret (Standard Webhooks asks for 24 to 64).
SECRET_BYTES = 32
DESCRIPTION_MAX_CHARS = 1000
MAX_EVENT_TYPES = 100
MAX_CUSTOM_HEADERS = 20
HEADER_VALUE_MAX_CHARS = 4096
#: Highest per-endpoint rate limit we accept (requests per second).
MAX_RATE_LIMIT_PER_SECOND = 10_000

EventType = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_.:*-]+$"),
]


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(random_secrets.token_bytes(SECRET_BYTES)).decode()


class EndpointFields(BaseModel):
    """An endpoint's document (camelCase in JSON): what a create and a replace take whole, a
    field left out taking its default, and what a merge patch applies to. The signing secret
    is not part of it: only :func:`regenerate_secret` changes it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    url: str
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX_CHARS)
    #: Empty (or null): every event type.
    event_types: list[EventType] | None = Field(default=None, max_length=MAX_EVENT_TYPES)
    #: True also re-enables an endpoint disabled for failing, starting its health afresh.
    active: bool = True
    headers: dict[str, str] | None = Field(
        default=None,
        description="Headers every request to the endpoint carries (e.g. the receiver's "
        "`Authorization`). Their values are secrets: stored encrypted, never shown again in "
        "full; a value sent back as an answer showed it (masked) keeps the stored one.",
    )
    rate_limit_per_second: int | None = Field(default=None, ge=1, le=MAX_RATE_LIMIT_PER_SECOND)
    max_retries: int | None = Field(default=None, ge=0, le=20)
    retry_schedule_ms: list[int] | None = None
    ordered: bool | None = None
    owner_email: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if len(value) > MAX_CUSTOM_HEADERS:
            raise ValueError(f"at most {MAX_CUSTOM_HEADERS} custom headers")
        for name, header_value in value.items():
            if not HEADER_NAME.fullmatch(name):
                raise ValueError(f"invalid header name {name!r}")
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"header {name} is set by the webhook sender and cannot be overridden")
            if len(header_value) > HEADER_VALUE_MAX_CHARS:
                raise ValueError(f"the value of header {name} is over {HEADER_VALUE_MAX_CHARS} characters")
            single_line(header_value, f"the value of header {name}")
        return value

    @field_validator("retry_schedule_ms")
    @classmethod
    def _schedule(cls, value: list[int] | None) -> list[int] | None:
        return None if value is None else list(parse_schedule(value))

    @field_validator("owner_email")
    @classmethod
    def _owner(cls, value: str | None) -> str | None:
        return None if value is None else normalize_email(value)


def _refuse(field: str, message: str) -> ValidationError:
    return ValidationError(
        f"{field}: {message}", [{"field": field, "message": message, "type": "value_error"}]
    )


def _check_reachable(settings: Settings, url: str) -> None:
    try:
        netguard.check_url(url, settings.address_policy)
    except netguard.AddressRefused as exc:
        raise _refuse("url", f"URL refused: {exc}") from None


def view(row: WebhookConfiguration, settings: Settings) -> dict[str, Any]:
    """An endpoint as the API shows it: never its secrets, its headers' values masked."""
    keys = settings.webhooks.encryption_keys
    return {
        "id": row.id,
        "url": row.url,
        "description": row.description,
        "eventTypes": list(row.event_types or []),
        "active": row.active,
        "headers": {name: _shown(value, keys) for name, value in (row.headers or {}).items()},
        "rateLimitPerSecond": row.rate_limit_per_second,
        "maxRetries": row.max_retries,
        "retryScheduleMs": row.retry_schedule_ms,
        "ordered": row.ordered,
        "ownerEmail": row.owner_email,
        "failingSince": _iso(row.failing_since),
        "consecutiveFailures": row.consecutive_failures,
        "disabledAt": _iso(row.disabled_at),
        "disabledReason": row.disabled_reason,
        "previousSecretExpiresAt": _iso(row.previous_secret_expires_at),
        "createdAt": _iso(row.created_at),
        "updatedAt": _iso(row.updated_at),
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _shown(stored: str, keys: Sequence[str]) -> str:
    try:
        return masked(secretbox.unseal(stored, keys))
    except ConfigError:  # no key opens it: there is nothing to show but the mask
        return MASK


def _stored_headers(given: dict[str, str], current: dict[str, str], keys: Sequence[str]) -> dict[str, str]:
    """The headers to store for ``given``, each value sealed. A value given exactly as an
    answer showed the current one (masked) keeps the current one."""
    stored: dict[str, str] = {}
    for name, value in given.items():
        if name in current and value == _shown(current[name], keys):
            stored[name] = current[name]
        elif value.startswith(secretbox.ENCRYPTED_PREFIX):
            # Stored as given without keys, it would read as sealed.
            raise _refuse(
                "headers", f"the value of header {name} may not begin with {secretbox.ENCRYPTED_PREFIX}"
            )
        else:
            stored[name] = secretbox.seal(value, keys)
    return stored


def get(session: Session, endpoint_id: str, *, for_update: bool = False) -> WebhookConfiguration:
    """The endpoint; ``for_update`` locks it until the transaction ends."""
    row = session.get(WebhookConfiguration, endpoint_id, with_for_update=for_update)
    if row is None:
        raise NotFound(f"no webhook configuration {endpoint_id}")
    return row


#: The order endpoints are listed in: oldest first, by columns no update changes.
LISTED = keyset.Keyset((WebhookConfiguration.created_at, WebhookConfiguration.id))


def list_page(
    session: Session, after: keyset.Position | None, limit: int
) -> tuple[list[WebhookConfiguration], keyset.Position | None]:
    return keyset.page(session, select(WebhookConfiguration), LISTED, after, limit)


def document(row: WebhookConfiguration, settings: Settings) -> dict[str, Any]:
    """The endpoint as the :class:`EndpointFields` that would save it as it is (what a merge
    patch applies to); its headers' values masked, which keeps them when saved back."""
    shown = view(row, settings)
    return {name: shown[name] for name in _DOCUMENT_FIELDS}


_DOCUMENT_FIELDS = tuple(info.alias or name for name, info in EndpointFields.model_fields.items())


def _replace(row: WebhookConfiguration, fields: EndpointFields, keys: Sequence[str]) -> None:
    if fields.active and (not row.active or row.disabled_at is not None):
        # Re-enabling starts the endpoint's health record afresh.
        row.failing_since = row.disabled_at = row.disabled_reason = None
        row.consecutive_failures = 0
    row.url = fields.url
    row.description = fields.description
    row.event_types = list(fields.event_types or [])
    row.active = fields.active
    row.headers = _stored_headers(fields.headers or {}, dict(row.headers or {}), keys)
    row.rate_limit_per_second = fields.rate_limit_per_second
    row.max_retries = fields.max_retries
    row.retry_schedule_ms = fields.retry_schedule_ms
    row.ordered = bool(fields.ordered)
    row.owner_email = fields.owner_email


@dataclass(frozen=True)
class Created:
    row: WebhookConfiguration
    secret: str


def create(session: Session, settings: Settings, fields: EndpointFields) -> Created:
    _check_reachable(settings, fields.url)
    secret = generate_secret()
    now = utcnow()
    row = WebhookConfiguration(
        id=str(uuid.uuid4()),
        url=fields.url,
        event_types=[],
        active=True,
        headers={},
        ordered=False,
        consecutive_failures=0,
        secret=secretbox.seal(secret, settings.webhooks.encryption_keys),
        created_at=now,
        updated_at=now,
    )
    _replace(row, fields, settings.webhooks.encryption_keys)
    session.add(row)
    session.flush()
    return Created(row, secret)


def replace(session: Session, settings: Settings, row: WebhookConfiguration, fields: EndpointFields) -> None:
    """Every field of ``row`` (as :func:`get` read it ``for_update``) from ``fields``; its
    secret stays."""
    if fields.url != row.url:
        _check_reachable(settings, fields.url)
    _replace(row, fields, settings.webhooks.encryption_keys)
    row.updated_at = utcnow()
    session.flush()


#: Why a delivery to an endpoint that no longer exists ends (here and at its claim).
DELETED_REASON = "the webhook endpoint was deleted"
DELETED_CODE = "endpoint_deleted"


def delete(session: Session, endpoint_id: str) -> list[str]:
    """Delete the endpoint and fail its deliveries waiting for an attempt (retries planned
    hours ahead would otherwise linger as queued); returns their ids. ``session`` must act
    as the system: the deliveries belong to any user. A delivery being attempted right now
    finishes its attempt and then ends the same way, at its next claim."""
    session.delete(get(session, endpoint_id))
    waiting = session.scalars(
        select(NotificationLog.id).where(
            NotificationLog.channel == Channel.WEBHOOK.value,
            NotificationLog.status == Status.QUEUED.value,
            NotificationLog.payload[CONFIGURATION_FIELD].as_string() == endpoint_id,
        )
    ).all()
    ended = [
        message_id
        for message_id in waiting
        if tracking.close_unsendable(
            session, message_id, status=Status.FAILED, reason=DELETED_REASON, code=DELETED_CODE
        )
    ]
    session.flush()
    return ended


def regenerate_secret(
    session: Session, settings: Settings, endpoint_id: str, grace_ms: int | None = None
) -> Created:
    """A new secret; the current one keeps signing beside it for the grace period."""
    row = get(session, endpoint_id)
    now = utcnow()
    grace = settings.webhooks.secret_grace_ms if grace_ms is None else grace_ms
    secret = generate_secret()
    if grace > 0:
        row.previous_secret = row.secret
        row.previous_secret_expires_at = now + timedelta(milliseconds=grace)
    else:
        row.previous_secret = row.previous_secret_expires_at = None
    row.secret = secretbox.seal(secret, settings.webhooks.encryption_keys)
    row.updated_at = now
    session.flush()
    return Created(row, secret)


def signing_secrets(row: WebhookConfiguration, settings: Settings, now: datetime | None = None) -> list[str]:
    """The secrets that sign a request to ``row`` now: its own, and during a rotation's grace
    period the previous one too (receivers holding either verify)."""
    keys = settings.webhooks.encryption_keys
    found = [secretbox.unseal(row.secret, keys)]
    expires = row.previous_secret_expires_at
    if row.previous_secret and expires is not None and expires > (now or utcnow()):
        found.append(secretbox.unseal(row.previous_secret, keys))
    return found


def custom_headers(row: WebhookConfiguration, settings: Settings) -> dict[str, str]:
    """The headers a request to ``row`` carries besides ours, unsealed; ConfigError when no
    configured key opens one."""
    keys = settings.webhooks.encryption_keys
    return {name: secretbox.unseal(value, keys) for name, value in (row.headers or {}).items()}


def subscribed(row: WebhookConfiguration, event_type: str) -> bool:
    """Whether ``row`` receives ``event_type``: an empty list or ``*`` means every type; an
    entry ending in ``.*`` covers a family (``order.*``)."""
    wanted = list(row.event_types or [])
    if not wanted or "*" in wanted or event_type in wanted:
        return True
    return any(w.endswith(".*") and event_type.startswith(w[:-1]) for w in wanted)
