"""The webhook pool: signed HTTP POSTs (Standard Webhooks), one ``webhook_delivery_logs`` row
per attempt written in the same transaction as the status change.

Messages for a configured endpoint follow the endpoint's retry schedule (Svix's by default)
and keep the endpoint's health record: consecutive failures, since when it has been failing,
and whether it is disabled (410 Gone at once, or failing for WEBHOOK_DISABLE_AFTER). Ad-hoc
messages keep the channel's exponential backoff (WEBHOOK_MAX_RETRIES, WEBHOOK_RETRY_DELAY).
An endpoint's ``rateLimitPerSecond`` and per-key ordering (:mod:`shared.webhooks.ordering`)
are enforced before a message is claimed, so a message held back keeps all its attempts.

The dispatch stage, around the provider's one HTTP call:

    endpoint as it is now (url, headers, secrets) → circuit breaker → POST → breaker verdict
      ↘ deleted / disabled: failed                  ↘ open: retried after the cooldown
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from shared.channels import Channel, Status
from shared.config import Settings
from shared.db.models import NotificationLog, WebhookConfiguration, WebhookDeliveryLog, utcnow
from shared.db.rls import system_scope
from shared.db.session import session_scope
from shared.errors import ConfigError, DeliveryError, PermanentDeliveryError, TemporaryDeliveryError
from shared.logging import get_logger
from shared.payloads import PayloadError, WebhookPayload, load
from shared.webhooks import endpoints as webhook_endpoints
from shared.webhooks import ordering as webhook_ordering
from workers.delivery.attempt import Delivery
from workers.delivery.pipeline import Action, Outcome, Pipeline
from workers.delivery.retry import JITTER
from workers.providers.base import Exchange, FailedDispatch, Outgoing, SendResult
from workers.providers.http import WebhookCall, WebhookProvider
from workers.webhook import alerts as webhook_alerts
from workers.webhook.breaker import CircuitBreaker, build_breaker

log = get_logger(__name__)

#: Response bodies kept per attempt (the provider already reads no more than this).
RESPONSE_EXCERPT_CHARS = 64 * 1024

#: Answers whose Retry-After a configured endpoint's schedule gives way to.
RETRY_AFTER_CODES = frozenset({"http_429", "http_502", "http_503", "http_504"})

#: The answer that disables an endpoint at once: the receiver says it is gone for good.
GONE_CODE = "http_410"

#: The window of an endpoint's ``rateLimitPerSecond``.
ENDPOINT_RATE_WINDOW_MS = 1000

#: Failures that say something about the endpoint's configuration, not its health: they
#: neither open its circuit breaker nor count towards disabling it.
ENDPOINT_STATE_CODES = frozenset(
    {
        "endpoint_deleted",
        "endpoint_disabled",
        "endpoint_secret_unreadable",
        "circuit_open",
        "http_address_refused",
    }
)


def _content(delivery: Delivery) -> WebhookPayload | None:
    """The webhook's content; None while a templated message is not rendered yet (its render
    failed)."""
    return delivery.payload if isinstance(delivery.payload, WebhookPayload) else None


class WebhookPipeline(Pipeline):
    def __init__(
        self, provider: WebhookProvider, settings: Settings, breaker: CircuitBreaker | None = None
    ) -> None:
        super().__init__(Channel.WEBHOOK, provider, settings)
        self.http = provider
        self.breaker = breaker or build_breaker(settings)

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
            try:
                content = load(Channel.WEBHOOK, message.payload).payload
            except PayloadError:
                return None  # the pipeline fails it once claimed
            if not isinstance(content, WebhookPayload) or content.configuration_id is None:
                return None
            endpoint_id = content.configuration_id
            endpoint = session.get(WebhookConfiguration, endpoint_id)
            if endpoint is None:
                return None
            if endpoint.ordered and content.ordering_key is not None:
                due = webhook_ordering.predecessor_due(session, message, endpoint_id, content.ordering_key)
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

    def dispatch(self, delivery: Delivery) -> SendResult | FailedDispatch:
        content = _content(delivery)
        if content is None:
            raise TypeError("a webhook is dispatched only once rendered")
        endpoint_id = content.configuration_id
        if endpoint_id is None:  # an ad-hoc URL, signed with WEBHOOK_SECRET
            return self.post(delivery, WebhookCall(url=content.url, body=content.body))
        endpoint = self.endpoint(endpoint_id)
        if isinstance(endpoint, FailedDispatch):
            return endpoint
        wait_ms = self.breaker.wait_ms(endpoint_id)
        if wait_ms:
            return FailedDispatch(
                TemporaryDeliveryError(
                    "the endpoint's circuit breaker is open after repeated failures; not sent",
                    code="circuit_open",
                    retry_after_ms=wait_ms,
                )
            )
        outcome = self.post(
            delivery,
            WebhookCall(
                url=endpoint.url, body=content.body, headers=endpoint.headers, secrets=endpoint.secrets
            ),
        )
        if isinstance(outcome, SendResult):
            self.breaker.record(endpoint_id, ok=True)
        elif outcome.error.code not in ENDPOINT_STATE_CODES:
            self.breaker.record(endpoint_id, ok=False)
        return outcome

    def endpoint(self, endpoint_id: str) -> Endpoint | FailedDispatch:
        """The endpoint as it is *now*: a message goes to its current URL, headers and secrets
        (during a secret rotation both the new and the previous secret sign), and not at all
        once it is deleted or disabled."""
        with session_scope(self.settings.database_url) as session:
            row = session.get(WebhookConfiguration, endpoint_id)
            if row is None:
                return FailedDispatch(
                    PermanentDeliveryError("the webhook endpoint was deleted", code="endpoint_deleted")
                )
            if not row.active or row.disabled_at is not None:
                reason = row.disabled_reason or "deactivated"
                return FailedDispatch(
                    PermanentDeliveryError(
                        f"the webhook endpoint is disabled: {reason}", code="endpoint_disabled"
                    )
                )
            try:
                secrets = webhook_endpoints.signing_secrets(row, self.settings)
            except ConfigError as exc:
                return FailedDispatch(PermanentDeliveryError(str(exc), code="endpoint_secret_unreadable"))
            return Endpoint(url=row.url, headers=dict(row.headers or {}), secrets=tuple(secrets))

    def post(self, delivery: Delivery, call: WebhookCall) -> SendResult | FailedDispatch:
        started = time.perf_counter()
        message = Outgoing(id=delivery.id, attempt=delivery.attempt, payload=call, user_id=delivery.user_id)
        try:
            outcome = self.http.post(message)
        except Exception as exc:  # a bug or an unexpected library error: retry, then dead-letter
            error = self.unexpected(delivery.id, exc)
            self.observe_provider(started, None)
            return FailedDispatch(error)
        self.observe_provider(started, outcome if isinstance(outcome, SendResult) else outcome.error)
        return outcome

    def retry_delay(self, delivery: Delivery, error: DeliveryError) -> int:
        content = _content(delivery)
        schedule = content.retry_schedule_ms if content is not None else ()
        if not schedule:
            return super().retry_delay(delivery, error)
        planned = schedule[min(delivery.attempt, len(schedule)) - 1]
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
        self, session: Session, delivery: Delivery, outcome: SendResult | FailedDispatch
    ) -> None:
        content = _content(delivery)
        endpoint_id = content.configuration_id if content is not None else None
        error = outcome.error if isinstance(outcome, FailedDispatch) else None
        if endpoint_id is not None and (error is None or error.code not in ENDPOINT_STATE_CODES):
            # Before the log insert: that insert's foreign key takes a KEY SHARE lock on the
            # endpoint row, and two attempts each holding one while waiting to update the row
            # would deadlock.
            self._record_health(session, endpoint_id, error)
        sent = outcome.exchange or Exchange(url=content.url if content is not None else delivery.recipient)
        session.add(
            WebhookDeliveryLog(
                notification_log_id=delivery.id,
                configuration_id=endpoint_id,
                attempt=delivery.attempt,
                url=sent.url,
                request_headers=sent.request_headers,
                request_body=sent.request_body,
                response_status=sent.status,
                response_headers=sent.response_headers,
                response_body=(sent.response_excerpt or "")[:RESPONSE_EXCERPT_CHARS] or None,
                error_class=None if error is None else error.code,
                error_message=None if error is None else error.message,
                duration_ms=sent.duration_ms,
                timings=sent.timings or None,
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


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how a configured endpoint's message is sent now."""

    url: str
    headers: dict[str, str]
    secrets: tuple[str, ...]


def build_pipeline(settings: Settings) -> Pipeline:
    return WebhookPipeline(WebhookProvider(settings), settings)
