"""The webhook pool: signed HTTP POSTs (Standard Webhooks), one ``webhook_delivery_logs`` row
per attempt written in the same transaction as the status change."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from shared.channels import Channel
from shared.config import Settings
from shared.db.models import WebhookDeliveryLog
from shared.delivery import Pipeline
from shared.errors import DeliveryError
from shared.tracking import Claimed

#: Response bodies kept per attempt (the provider already reads no more than this).
RESPONSE_EXCERPT_CHARS = 64 * 1024


class WebhookPipeline(Pipeline):
    def after_attempt(
        self, session: Session, claim: Claimed, details: dict[str, Any], error: DeliveryError | None
    ) -> None:
        body = details.get("request_body")
        session.add(
            WebhookDeliveryLog(
                notification_log_id=claim.id,
                configuration_id=claim.payload.get("configurationId"),
                attempt=claim.attempt,
                url=str(claim.payload.get("url", claim.recipient)),
                request_headers=details.get("request_headers") or {},
                request_body=body if isinstance(body, str) else None,
                response_status=details.get("status"),
                response_headers=details.get("response_headers"),
                response_body=(details.get("response_excerpt") or None)
                and str(details["response_excerpt"])[:RESPONSE_EXCERPT_CHARS],
                error_class=None if error is None else error.code,
                error_message=None if error is None else error.message,
                duration_ms=details.get("duration_ms"),
                success=error is None,
            )
        )


def build_pipeline(settings: Settings) -> Pipeline:
    from shared.providers.http import WebhookProvider

    return WebhookPipeline(Channel.WEBHOOK, WebhookProvider(settings), settings)
