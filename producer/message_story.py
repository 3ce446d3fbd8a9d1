"""A message's whole story for the operator console: its stored payload with secret values
masked, and every attempt the webhook worker logged (request and response); and replaying a
message that ended.

A replay gives the message one more round in its ``notification_logs`` row and publishes it
again. Any channel's failed message may be replayed (a fresh round of its channel's retries,
as a dead letter replayed gets); a webhook that ended otherwise may be too (one more
attempt, as ``POST /api/webhooks/deliveries/{id}/replay`` gives), since receivers drop a
``webhook-id`` they already have. An email or SMS that went out is never sent twice this way.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from sqlalchemy import select

from producer.dead_letters import new_round
from producer.webhooks import log_view
from shared.broker import get_broker, publish
from shared.channels import Channel, Status
from shared.config import Settings
from shared.db.models import NotificationLog, WebhookDeliveryLog
from shared.db.rls import system_scope
from shared.errors import NotFound
from shared.webhooks import replay as webhook_replay
from shared.webhooks.headers import masked

#: Keys whose values are credentials wherever they appear in a payload.
SECRET_KEY = re.compile(
    # webhookUrl: a chat message's Slack or Teams webhook, whose URL is the credential.
    r"secret|token|passw|authori[sz]ation|api[-_]?key|credential|cookie|signature|webhook[-_]?url",
    re.I,
)
#: The most attempts a story shows, newest first.
MAX_ATTEMPTS = 100


def mask_secrets(value: Any) -> Any:
    """``value`` with the value of every key that names a credential masked, at any depth."""
    if isinstance(value, dict):
        return {
            k: (masked(str(v)) if SECRET_KEY.search(str(k)) and v not in (None, "") else mask_secrets(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value


def _masked_attempt(attempt: dict[str, Any]) -> dict[str, Any]:
    """An attempt as logged, its request body (the payload as sent) masked like the payload."""
    body = attempt.get("requestBody")
    if body:
        with contextlib.suppress(ValueError):  # not JSON: shown as logged
            attempt["requestBody"] = json.dumps(mask_secrets(json.loads(body)))
    return attempt


def story(settings: Settings, message_id: str) -> dict[str, Any]:
    with system_scope(settings.database_url) as session:
        row = session.get(NotificationLog, message_id)
        if row is None:
            raise NotFound(f"no message {message_id}")
        attempts = session.scalars(
            select(WebhookDeliveryLog)
            .where(WebhookDeliveryLog.notification_log_id == message_id)
            .order_by(WebhookDeliveryLog.created_at.desc(), WebhookDeliveryLog.id.desc())
            .limit(MAX_ATTEMPTS)
        )
        return {
            "id": row.id,
            "channel": row.channel,
            "payload": mask_secrets(row.payload),
            "attempts": [_masked_attempt(log_view(attempt)) for attempt in attempts],
        }


def replay(settings: Settings, message_id: str) -> str:
    """Queue ``message_id`` again (see the module's rules); raises ReplayRefused when it may
    not be, NotFound when there is no such message."""
    with system_scope(settings.database_url) as session:
        row = session.get(NotificationLog, message_id, with_for_update=True)
        if row is None:
            raise NotFound(f"no message {message_id}")
        channel = Channel(row.channel)
        if channel is Channel.WEBHOOK:
            webhook_replay.replay(session, message_id)
        elif row.status != Status.FAILED.value:
            raise webhook_replay.ReplayRefused(
                f"message {message_id} is {row.status}: only a failed {channel.value} message is replayed"
            )
        else:
            new_round(session, settings, channel, message_id)
    publish(get_broker(settings), channel, message_id)
    return message_id
