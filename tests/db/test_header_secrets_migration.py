"""The revision that makes endpoints' custom headers secrets, on a database written before
it: header values already stored are encrypted with WEBHOOK_ENCRYPTION_KEYS (and decrypt to
what they were), the values delivery logs kept of them are masked, the sender's own headers
stay readable, and the downgrade gives the endpoints their plain values back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, text

from migrations.migrate import downgrade, upgrade
from shared.db.models import utcnow
from shared.webhooks import secretbox
from shared.webhooks.headers import MASK
from tests.conftest import PG_ADMIN_URL, WEBHOOK_ENCRYPTION_KEY

#: The revision before this one.
BEFORE = "0005"

HEADERS = {"Authorization": "Bearer rcv_live_0a1b2c3d4e5f", "X-Tenant": "acme"}
#: What an attempt sent before the revision: the sender's headers, the provider's own
#: redaction of Authorization, and the endpoint's other header in plain text.
SENT = {
    "content-type": "application/json",
    "webhook-id": "message-1",
    "webhook-signature": "[redacted]",
    "authorization": "[redacted]",
    "x-tenant": "acme",
}


@pytest.fixture
def old_database(run_id: str) -> Iterator[str]:
    """A database migrated up to the revision before this one, holding an endpoint with
    plain headers and one delivery log row of it."""
    name = f"kai_test_{run_id}_headers"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    upgrade(url, BEFORE)
    engine = create_engine(url)
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO webhook_configurations (id, url, event_types, active, headers, secret, "
                "ordered, consecutive_failures, created_at, updated_at) VALUES ('e1', "
                "'https://example.com/hook', '[]', true, CAST(:headers AS jsonb), 'whsec_x', false, 0, "
                ":now, :now)"
            ),
            {"headers": json.dumps(HEADERS), "now": now},
        )
        conn.execute(
            text(
                "INSERT INTO notification_logs (id, channel, status, recipient, payload, attempts, "
                "max_attempts, created_at, updated_at) VALUES ('message-1', 'webhook', 'sent', "
                "'https://example.com/hook', '{}', 1, 1, :now, :now)"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                "INSERT INTO webhook_delivery_logs (notification_log_id, configuration_id, attempt, "
                "url, request_headers, success, created_at) VALUES ('message-1', 'e1', 1, "
                "'https://example.com/hook', CAST(:sent AS jsonb), true, :now)"
            ),
            {"sent": json.dumps(SENT), "now": now},
        )
    engine.dispose()
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def stored(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            headers = conn.execute(text("SELECT headers FROM webhook_configurations")).scalar_one()
            sent = conn.execute(text("SELECT request_headers FROM webhook_delivery_logs")).scalar_one()
    finally:
        engine.dispose()
    return headers, sent


def test_stored_headers_are_encrypted_and_logged_values_masked(
    old_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_ENCRYPTION_KEYS", WEBHOOK_ENCRYPTION_KEY)

    upgrade(old_database)

    headers, sent = stored(old_database)
    assert set(headers) == set(HEADERS)
    assert all(value.startswith(secretbox.ENCRYPTED_PREFIX) for value in headers.values())
    keys = [WEBHOOK_ENCRYPTION_KEY]
    assert {name: secretbox.unseal(value, keys) for name, value in headers.items()} == HEADERS
    assert sent == {**SENT, "x-tenant": MASK}

    downgrade(old_database, BEFORE)

    assert stored(old_database)[0] == HEADERS


def test_without_keys_the_values_stay_as_the_application_stores_them(
    old_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WEBHOOK_ENCRYPTION_KEYS", raising=False)

    upgrade(old_database)

    headers, sent = stored(old_database)
    assert headers == HEADERS
    assert sent == {**SENT, "x-tenant": MASK}
