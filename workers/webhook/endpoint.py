"""A configured endpoint as a message to it is sent: read with the message's claim, in the
same transaction, so a message always goes to the endpoint as it is *now* (its URL, headers
and secrets; during a secret rotation both the new and the previous secret sign) and not
at all once the endpoint is deleted or disabled."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, select

from shared import tracking
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import WebhookConfiguration
from shared.errors import ConfigError
from shared.payloads import PayloadError, WebhookPayload, load
from shared.webhooks.endpoints import custom_headers, signing_secrets

_ENDPOINTS = cast(Table, WebhookConfiguration.__table__)
_LOAD = select(_ENDPOINTS).where(_ENDPOINTS.c.id.in_(bindparam("ids", expanding=True)))


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how a configured endpoint's message is sent now."""

    id: str
    url: str
    #: Its custom headers, unsealed; empty when they cannot be read, like ``secrets``.
    headers: dict[str, str]
    #: The secrets signing its requests; empty when they cannot be read (wrong
    #: WEBHOOK_ENCRYPTION_KEYS), with the reason in ``unreadable``.
    secrets: tuple[str, ...]
    ordered: bool
    rate_limit_per_second: int | None
    #: Why it takes no messages now (deactivated or disabled), else None.
    disabled: str | None = None
    unreadable: str | None = None


@dataclass(frozen=True, slots=True)
class Deleted:
    id: str


def configuration_id(claimed: tracking.Claimed) -> str | None:
    try:
        content = load(Channel.WEBHOOK, claimed.payload).payload
    except PayloadError:
        return None
    return content.configuration_id if isinstance(content, WebhookPayload) else None


def load_endpoints(
    settings: Settings, connection: Connection, claimed: Sequence[tracking.Claimed]
) -> dict[str, Endpoint | Deleted]:
    """Each claimed message's endpoint, by message id (ad-hoc messages have none)."""
    wanted = {c.id: endpoint_id for c in claimed if (endpoint_id := configuration_id(c)) is not None}
    if not wanted:
        return {}
    rows = {row.id: row for row in connection.execute(_LOAD, {"ids": list(set(wanted.values()))})}
    found: dict[str, Endpoint | Deleted] = {}
    for message_id, endpoint_id in wanted.items():
        row = rows.get(endpoint_id)
        found[message_id] = Deleted(endpoint_id) if row is None else _endpoint(settings, row)
    return found


def _endpoint(settings: Settings, row: Any) -> Endpoint:
    disabled = None
    if not row.active or row.disabled_at is not None:
        disabled = row.disabled_reason or "deactivated"
    secrets: tuple[str, ...] = ()
    headers: dict[str, str] = {}
    unreadable = None
    try:
        secrets = tuple(signing_secrets(row, settings))
        headers = custom_headers(row, settings)
    except ConfigError as exc:
        unreadable = str(exc)
    return Endpoint(
        id=row.id,
        url=row.url,
        headers=headers,
        secrets=secrets,
        ordered=bool(row.ordered),
        rate_limit_per_second=row.rate_limit_per_second,
        disabled=disabled,
        unreadable=unreadable,
    )
