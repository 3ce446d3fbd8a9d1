"""Operational notice to an endpoint's owner when the endpoint gets disabled.

The email is written in the same transaction that disables the endpoint, as a message due
now: the scheduler of an email worker publishes it (a transactional outbox), so the notice
is sent exactly when the disabling commits, never for a disabling that rolled back.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from shared import tracking
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import WebhookConfiguration, utcnow
from shared.logging import get_logger

log = get_logger(__name__)

#: Event type recorded on the notice, for filtering it among other emails.
DISABLED_EVENT_TYPE = "webhook.endpoint.disabled"


def endpoint_disabled(session: Session, settings: Settings, row: WebhookConfiguration) -> str | None:
    """Queue the notice for ``row`` (just disabled); returns its message id, or None when
    nobody is to be told (no ``ownerEmail`` and no WEBHOOK_ALERT_EMAIL)."""
    recipient = row.owner_email or settings.webhooks.alert_email
    if not recipient:
        return None
    disabled_at = (row.disabled_at or utcnow()).isoformat()
    text = (
        f"Your webhook endpoint {row.url} (id {row.id}) was disabled at {disabled_at}.\n"
        f"Reason: {row.disabled_reason}\n\n"
        "No events are sent to it until it is enabled again (PUT "
        f"/api/webhooks/configurations/{row.id} with active: true). Failed deliveries can be "
        f"sent again with POST /api/webhooks/configurations/{row.id}/recover."
    )
    message_id, _ = tracking.create(
        session,
        tracking.NewMessage(
            channel=Channel.EMAIL,
            recipient=recipient,
            payload={"to": recipient, "subject": "Webhook endpoint disabled", "text": text, "html": None},
            max_attempts=settings.retry_policy(Channel.EMAIL).max_attempts,
            event_type=DISABLED_EVENT_TYPE,
            idempotency_key=f"{DISABLED_EVENT_TYPE}:{row.id}:{disabled_at}",
            due_at=utcnow(),
        ),
    )
    log.info("webhook.disabled_notice_queued", configuration_id=row.id, message_id=message_id)
    return message_id
