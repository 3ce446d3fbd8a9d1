"""The webhook pool: signed HTTP POSTs (Standard Webhooks), one ``webhook_delivery_logs`` row
per attempt written in the same transaction as the status change.

Messages for a configured endpoint follow the endpoint's retry schedule (Svix's by default)
and keep the endpoint's health record: consecutive failures, since when it has been failing,
and whether it is disabled (410 Gone at once, or failing for WEBHOOK_DISABLE_AFTER). Ad-hoc
messages keep the channel's exponential backoff (WEBHOOK_MAX_RETRIES, WEBHOOK_RETRY_DELAY).
An endpoint's ``rateLimitPerSecond`` and per-key ordering (:mod:`shared.webhooks.ordering`)
are enforced before a message is claimed, so a message held back keeps all its attempts.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from shared.channels import Channel, Status
from shared.config import Settings
from shared.db.models import NotificationLog, WebhookConfiguration, WebhookDeliveryLog, utcnow
from shared.db.rls import system_scope
from shared.errors import DeliveryError, TemporaryDeliveryError
from shared.logging import get_logger
from shared.tracking import Claimed
from shared.webhooks import ordering as webhook_ordering
from workers.delivery.pipeline import Action, Outcome, Pipeline
from workers.delivery.retry import JITTER
from workers.providers.http import ENDPOINT_STATE_CODES
from workers.webhook import alerts as webhook_alerts

log = get_logger(__name__)

#: Response bodies kept per attempt (the provider already reads no more than this).
RESPONSE_EXCERPT_CHARS = 64 * 1024

#: Answers whose Retry-After a configured endpoint's schedule gives way to.
RETRY_AFTER_CODES = frozenset({"http_429", "http_502", "http_503", "http_504"})

#: The answer that disables an endpoint at once: the receiver says it is gone for good.
GONE_CODE = "http_410"

#: The window of an endpoint's ``rateLimitPerSecond``.
ENDPOINT_RATE_WINDOW_MS = 1000


def _endpoint_id(claim: Claimed) -> str | None:
    value = claim.payload.get("configurationId")
    return value if isinstance(value, str) else None


class WebhookPipeline(Pipeline):
    def run(self, message_id: str) -> Outcome:
        held = self.hold_back(message_id)
        if held is not None:
            return held
        return super().run(message_id)

    def hold_back(self, message_id: str) -> Outcome | None:
        """Keep a configured endpoint's message from being claimed while an earlier message
        with its ordering key is unfinished, or while the endpoint's rate limit is spent."""
        # As the system: the ordering check looks at other messages to the endpoint, whoever
        # they were sent for.
        with system_scope(self.settings.database_url) as session:
            message = session.get(NotificationLog, message_id)
            if message is None or message.status != Status.QUEUED.value:
                return None
            endpoint_id = message.payload.get("configurationId")
            if not isinstance(endpoint_id, str):
                return None
            endpoint = session.get(WebhookConfiguration, endpoint_id)
            if endpoint is None:
                return None
            if endpoint.ordered:
                due = webhook_ordering.predecessor_due(session, message)
                if due is not None:
                    return self._wait_for_predecessor(session, message_id, due)
            limit = endpoint.rate_limit_per_second
        if limit is None:
            return None
        decision = self.limiter.hit(f"webhook:{endpoint_id}", limit, ENDPOINT_RATE_WINDOW_MS)
        if not decision.allowed:
            log.info("webhook.rate_limited", message_id=message_id, retry_in_ms=decision.reset_ms)
            return Outcome(Action.RETRY, delay_ms=max(1, decision.reset_ms), reason="endpoint rate limit")
        return None

    def _wait_for_predecessor(self, session: Session, message_id: str, due: datetime) -> Outcome:
        wait_ms = max(webhook_ordering.RECHECK_MS, int((due - utcnow()).total_seconds() * 1000))
        if wait_ms > self.settings.broker_delay_limit_ms:
            webhook_ordering.park(session, message_id, due)
            return Outcome(Action.ACK, reason="parked behind an earlier message with its ordering key")
        return Outcome(Action.RETRY, delay_ms=wait_ms, reason="waiting for an earlier message with its key")

    def retry_delay(self, claim: Claimed, error: DeliveryError) -> int:
        schedule = claim.payload.get("retryScheduleMs")
        if not isinstance(schedule, list) or not schedule:
            return super().retry_delay(claim, error)
        planned = int(schedule[min(claim.attempt, len(schedule)) - 1])
        delay = int(planned * random.uniform(1 - JITTER, 1 + JITTER))
        hint = error.retry_after_ms if isinstance(error, TemporaryDeliveryError) else None
        if hint is None:
            return delay
        ceiling = self.settings.webhooks.retry_after_max_ms
        if error.code in RETRY_AFTER_CODES:
            return max(0, min(hint, ceiling))
        if error.code == "circuit_open":
            # Wait for the breaker's probe, but never retry sooner than the schedule says.
            return max(delay, min(hint, ceiling))
        return delay

    def after_attempt(
        self, session: Session, claim: Claimed, details: dict[str, Any], error: DeliveryError | None
    ) -> None:
        endpoint_id = _endpoint_id(claim)
        if endpoint_id is not None and (error is None or error.code not in ENDPOINT_STATE_CODES):
            # Before the log insert: that insert's foreign key takes a KEY SHARE lock on the
            # endpoint row, and two attempts each holding one while waiting to update the row
            # would deadlock.
            self._record_health(session, endpoint_id, error)
        body = details.get("request_body")
        session.add(
            WebhookDeliveryLog(
                notification_log_id=claim.id,
                configuration_id=endpoint_id,
                attempt=claim.attempt,
                url=str(details.get("url") or claim.payload.get("url", claim.recipient)),
                request_headers=details.get("request_headers") or {},
                request_body=body if isinstance(body, str) else None,
                response_status=details.get("status"),
                response_headers=details.get("response_headers"),
                response_body=(details.get("response_excerpt") or None)
                and str(details["response_excerpt"])[:RESPONSE_EXCERPT_CHARS],
                error_class=None if error is None else error.code,
                error_message=None if error is None else error.message,
                duration_ms=details.get("duration_ms"),
                timings=details.get("timings") or None,
                success=error is None,
            )
        )

    def _record_health(self, session: Session, endpoint_id: str, error: DeliveryError | None) -> None:
        # FOR NO KEY UPDATE: the health columns are no key, so inserts referencing the row
        # (delivery logs of other attempts) are not blocked.
        row = session.get(WebhookConfiguration, endpoint_id, with_for_update={"key_share": True})
        if row is None:
            return
        now = utcnow()
        if error is None:
            row.consecutive_failures = 0
            row.failing_since = None
            return
        row.consecutive_failures += 1
        row.failing_since = row.failing_since or now
        reason: str | None = None
        if error.code == GONE_CODE:
            reason = "the endpoint answered 410 Gone"
        elif now - row.failing_since >= timedelta(milliseconds=self.settings.webhooks.disable_after_ms):
            since = row.failing_since.isoformat()
            reason = f"failing since {since} ({row.consecutive_failures} attempts in a row)"
        if reason is not None and row.disabled_at is None:
            row.active = False
            row.disabled_at = now
            row.disabled_reason = reason
            row.updated_at = now
            log.warning("webhook.endpoint_disabled", configuration_id=endpoint_id, reason=reason)
            webhook_alerts.endpoint_disabled(session, self.settings, row)


def build_pipeline(settings: Settings) -> Pipeline:
    from workers.providers.http import WebhookProvider

    return WebhookPipeline(Channel.WEBHOOK, WebhookProvider(settings), settings)
