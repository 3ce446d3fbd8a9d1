"""Operational notices when an endpoint gets disabled: an email to its owner
(``ownerEmail`` or WEBHOOK_ALERT_EMAIL) and a webhook to WEBHOOK_ALERT_URL.

The notices are written in the same transaction that disables the endpoint, as messages due
now: the scheduler publishes them (a transactional outbox), so they are sent exactly when the
disabling commits, never for a disabling that rolled back.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from shared import tracking
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import WebhookConfiguration, utcnow
from shared.logging import get_logger
from shared.payloads import EmailPayload, Stored, WebhookPayload

log = get_logger(__name__)

#: Event type recorded on the notice, for filtering it among other emails.
DISABLED_EVENT_TYPE = "webhook.endpoint.disabled"


def endpoint_disabled(session: Session, settings: Settings, row: WebhookConfiguration) -> list[str]:
    """Queue the notices for ``row`` (just disabled); returns their message ids."""
    disabled_at = (row.disabled_at or utcnow()).isoformat()
    queued = [
        notice
        for notice in (
            _email(session, settings, row, disabled_at),
            _webhook(session, settings, row, disabled_at),
        )
        if notice is not None
    ]
    log.info("webhook.disabled_notices_queued", configuration_id=row.id, message_ids=queued)
    return queued


def _webhook(session: Session, settings: Settings, row: WebhookConfiguration, disabled_at: str) -> str | None:
    url = settings.webhooks.alert_url
    if not url:
        return None
    body = {
        "type": DISABLED_EVENT_TYPE,
        "timestamp": utcnow().isoformat(),
        "data": {
            "configurationId": row.id,
            "url": row.url,
            "disabledAt": disabled_at,
            "reason": row.disabled_reason,
        },
    }
    message_id, _ = tracking.create(
        session,
        tracking.NewMessage(
            channel=Channel.WEBHOOK,
            recipient=url,
            payload=Stored(WebhookPayload(url=url, body=body)),
            max_attempts=settings.retry_policy(Channel.WEBHOOK).max_attempts,
            event_type=DISABLED_EVENT_TYPE,
            idempotency_key=f"{DISABLED_EVENT_TYPE}:webhook:{row.id}:{disabled_at}",
            due_at=utcnow(),
        ),
    )
    return message_id


def _email(session: Session, settings: Settings, row: WebhookConfiguration, disabled_at: str) -> str | None:
    recipient = row.owner_email or settings.webhooks.alert_email
    if not recipient:
        return None
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
            payload=Stored(EmailPayload(to=recipient, subject="Webhook endpoint disabled", text=text)),
            max_attempts=settings.retry_policy(Channel.EMAIL).max_attempts,
            event_type=DISABLED_EVENT_TYPE,
            idempotency_key=f"{DISABLED_EVENT_TYPE}:{row.id}:{disabled_at}",
            due_at=utcnow(),
        ),
    )
    return message_id
