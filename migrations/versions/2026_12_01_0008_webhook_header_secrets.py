"""Custom headers of webhook endpoints are secrets (they usually carry the receiver's
credential): each value already stored is encrypted like the endpoint's signing secret, and
the values delivery logs kept of them are masked.

Values are encrypted with the first key of WEBHOOK_ENCRYPTION_KEYS in the environment of the
process running the migration (``kai-messaging migrate`` reads ``.env`` too); without keys
they stay as they are, which is how the application stores them then. A delivery log row
keeps the headers an attempt sent: the sender's own stay readable, every other value becomes
the mask. The masking cannot be undone; the downgrade decrypts the endpoints' headers.

The application's rules are repeated here rather than imported: a revision must not change
when the code it was written beside does.

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-01 14:00:00
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0008"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Marks an encrypted value (shared.webhooks.secretbox).
ENCRYPTED_PREFIX = "fernet:"
#: What a delivery log shows of a custom header's value (shared.webhooks.headers).
MASK = "\u2022" * 4
#: How the provider already wrote the values it redacts itself.
REDACTED = "[redacted]"
#: The headers the sender sets (shared.webhooks.headers.RESERVED_HEADERS): not the endpoint's.
SENDER_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "user-agent",
        "accept-encoding",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
#: Delivery log rows read and rewritten per round trip.
BATCH_ROWS = 1000

JSON_DOC = sa.JSON().with_variant(JSONB(), "postgresql")
ENDPOINTS = sa.table("webhook_configurations", sa.column("id", sa.String), sa.column("headers", JSON_DOC))
LOGS = sa.table(
    "webhook_delivery_logs", sa.column("id", sa.BigInteger), sa.column("request_headers", JSON_DOC)
)


def _box() -> MultiFernet | None:
    keys = [k.strip() for k in os.environ.get("WEBHOOK_ENCRYPTION_KEYS", "").split(",") if k.strip()]
    return MultiFernet([Fernet(key.encode()) for key in keys]) if keys else None


def _rewrite_endpoint_headers(change: Any) -> None:
    bind = op.get_bind()
    for row in bind.execute(sa.select(ENDPOINTS.c.id, ENDPOINTS.c.headers)).all():
        headers = dict(row.headers or {})
        changed = {name: change(value) for name, value in headers.items()}
        if changed != headers:
            bind.execute(sa.update(ENDPOINTS).where(ENDPOINTS.c.id == row.id).values(headers=changed))


def _masked(sent: dict[str, Any]) -> dict[str, Any]:
    return {
        name: value if name.lower() in SENDER_HEADERS or value in (REDACTED, MASK) else MASK
        for name, value in sent.items()
    }


def _mask_delivery_logs() -> None:
    bind = op.get_bind()
    last = -1
    while True:
        rows = bind.execute(
            sa.select(LOGS.c.id, LOGS.c.request_headers)
            .where(LOGS.c.id > last)
            .order_by(LOGS.c.id)
            .limit(BATCH_ROWS)
        ).all()
        if not rows:
            return
        for row in rows:
            sent = dict(row.request_headers or {})
            if _masked(sent) != sent:
                bind.execute(sa.update(LOGS).where(LOGS.c.id == row.id).values(request_headers=_masked(sent)))
        last = rows[-1].id


def upgrade() -> None:
    box = _box()
    if box is not None:

        def seal(value: str) -> str:
            if value.startswith(ENCRYPTED_PREFIX):
                return value
            return ENCRYPTED_PREFIX + box.encrypt(value.encode()).decode()

        _rewrite_endpoint_headers(seal)
    _mask_delivery_logs()


def downgrade() -> None:
    box = _box()

    def unseal(value: str) -> str:
        if not value.startswith(ENCRYPTED_PREFIX):
            return value
        if box is None:
            raise RuntimeError("webhook headers are encrypted: set WEBHOOK_ENCRYPTION_KEYS to downgrade")
        return box.decrypt(value.removeprefix(ENCRYPTED_PREFIX).encode()).decode()

    _rewrite_endpoint_headers(unseal)
