"""The webhook pool: signed HTTP POSTs (Standard Webhooks), one ``webhook_delivery_logs`` row
per attempt written in the same transaction as the status change (:mod:`.records`).

Messages for a configured endpoint follow the endpoint's retry schedule (Svix's by default)
and keep the endpoint's health record. Ad-hoc messages keep the channel's exponential
backoff (WEBHOOK_MAX_RETRIES, WEBHOOK_RETRY_DELAY). The endpoint is read with the claim
(:mod:`.endpoint`); its ``rateLimitPerSecond`` and per-key ordering
(:mod:`shared.webhooks.ordering`) may hold the message back, which gives its attempt back.

The stages around the provider's one HTTP call:

    endpoint held back? (order, rate) → deleted / disabled? → circuit breaker → POST → verdict
       ↘ retried, attempt given back     ↘ failed               ↘ retried after the cooldown
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from shared.channels import Channel
from shared.config import Settings
from shared.db.models import utcnow
from shared.db.rls import system_scope
from shared.errors import DeliveryError, PermanentDeliveryError, TemporaryDeliveryError
from shared.logging import get_logger
from shared.payloads import WebhookPayload
from shared.webhooks import ordering as webhook_ordering
from workers.delivery.attempt import Delivery
from workers.delivery.breaker import CircuitBreaker, build_breaker
from workers.delivery.ledger import Claim, Ledger
from workers.delivery.pipeline import Action, Outcome, Pipeline
from workers.delivery.retry import JITTER
from workers.providers.base import Exchange, FailedDispatch, Outgoing, SendResult
from workers.providers.http import WebhookCall, WebhookProvider
from workers.webhook.endpoint import Deleted, Endpoint, load_endpoints
from workers.webhook.records import Attempt, write_attempts

log = get_logger(__name__)

#: Answers whose Retry-After a configured endpoint's schedule gives way to.
RETRY_AFTER_CODES = frozenset({"http_429", "http_502", "http_503", "http_504"})

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

EndpointState = Endpoint | Deleted


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
        self.breaker = breaker or build_breaker(
            settings,
            threshold=settings.webhooks.breaker_threshold,
            cooldown_ms=settings.webhooks.breaker_cooldown_ms,
        )

    def make_ledger(self) -> Ledger[EndpointState]:
        return Ledger(
            self.settings,
            self.channel.value,
            load_extra=partial(load_endpoints, self.settings),
            write_extra=partial(write_attempts, self.settings),
        )

    async def before_sending(self, delivery: Delivery, claim: Claim[Any]) -> Outcome | None:
        endpoint = claim.extra
        if isinstance(endpoint, Endpoint):
            held = await self.hold_back(delivery, endpoint)
            if held is not None:
                return held
        return await super().before_sending(delivery, claim)

    async def hold_back(self, delivery: Delivery, endpoint: Endpoint) -> Outcome | None:
        """Give the attempt back while an earlier message with the same ordering key is
        unfinished, or while the endpoint's rate limit is spent."""
        content = _content(delivery)
        if endpoint.ordered and content is not None and content.ordering_key and delivery.created_at:
            due = await asyncio.to_thread(
                self._predecessor_due, delivery.id, delivery.created_at, endpoint.id, content.ordering_key
            )
            if due is not None:
                return await self._wait_for_predecessor(delivery, due)
        limit = endpoint.rate_limit_per_second
        if limit is None:
            return None
        decision = self.limiter.hit(f"webhook:{endpoint.id}", limit, ENDPOINT_RATE_WINDOW_MS)
        if decision.allowed:
            return None
        wait_ms = max(1, decision.reset_ms)
        await self.hold(
            delivery,
            utcnow() + timedelta(milliseconds=wait_ms),
            reason="endpoint rate limit",
            code="held",
            park=False,
        )
        log.info("webhook.rate_limited", message_id=delivery.id, retry_in_ms=wait_ms)
        return Outcome(Action.RETRY, delay_ms=wait_ms, reason="endpoint rate limit")

    def _predecessor_due(
        self, message_id: str, created_at: datetime, endpoint_id: str, key: str
    ) -> datetime | None:
        # As the system: the ordering check looks at other messages to the endpoint, whoever
        # they were sent for.
        with system_scope(self.settings.database_url) as session:
            return webhook_ordering.predecessor_due(session, message_id, created_at, endpoint_id, key)

    async def _wait_for_predecessor(self, delivery: Delivery, due: datetime) -> Outcome:
        wait_ms = max(webhook_ordering.RECHECK_MS, int((due - utcnow()).total_seconds() * 1000))
        park = wait_ms > self.settings.broker_delay_limit_ms
        until = utcnow() + timedelta(milliseconds=wait_ms + (webhook_ordering.RECHECK_MS if park else 0))
        await self.hold(
            delivery, until, reason="an earlier message with its ordering key", code="held", park=park
        )
        if park:
            return Outcome(Action.ACK, reason="parked behind an earlier message with its ordering key")
        return Outcome(Action.RETRY, delay_ms=wait_ms, reason="waiting for an earlier message with its key")

    async def dispatch(self, delivery: Delivery, claim: Claim[Any]) -> SendResult | FailedDispatch:
        content = _content(delivery)
        if content is None:
            raise TypeError("a webhook is dispatched only once rendered")
        endpoint = claim.extra
        if endpoint is None:  # an ad-hoc URL, signed with WEBHOOK_SECRET
            return await self.post(delivery, WebhookCall(url=content.url, body=content.body))
        if isinstance(endpoint, Deleted):
            return FailedDispatch(
                PermanentDeliveryError("the webhook endpoint was deleted", code="endpoint_deleted")
            )
        if endpoint.disabled is not None:
            error = PermanentDeliveryError(
                f"the webhook endpoint is disabled: {endpoint.disabled}", code="endpoint_disabled"
            )
            return FailedDispatch(error)
        if endpoint.unreadable is not None:
            return FailedDispatch(
                PermanentDeliveryError(endpoint.unreadable, code="endpoint_secret_unreadable")
            )
        wait_ms = self.breaker.wait_ms(endpoint.id)
        if wait_ms:
            return FailedDispatch(
                TemporaryDeliveryError(
                    "the endpoint's circuit breaker is open after repeated failures; not sent",
                    code="circuit_open",
                    retry_after_ms=wait_ms,
                )
            )
        call = WebhookCall(
            url=endpoint.url, body=content.body, headers=endpoint.headers, secrets=endpoint.secrets
        )
        outcome = await self.post(delivery, call)
        if isinstance(outcome, SendResult):
            self.breaker.record(endpoint.id, ok=True)
        elif outcome.error.code not in ENDPOINT_STATE_CODES:
            self.breaker.record(endpoint.id, ok=False)
        return outcome

    async def post(self, delivery: Delivery, call: WebhookCall) -> SendResult | FailedDispatch:
        started = time.perf_counter()
        message = Outgoing(id=delivery.id, attempt=delivery.attempt, payload=call, user_id=delivery.user_id)
        try:
            outcome = await self.http.post(message)
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

    def kept_beside(self, delivery: Delivery, outcome: SendResult | FailedDispatch) -> Attempt:
        content = _content(delivery)
        error = outcome.error if isinstance(outcome, FailedDispatch) else None
        sent = outcome.exchange or Exchange(url=content.url if content is not None else delivery.recipient)
        return Attempt(
            message_id=delivery.id,
            attempt=delivery.attempt,
            endpoint_id=content.configuration_id if content is not None else None,
            exchange=sent,
            error=error,
            counts_for_health=error is None or error.code not in ENDPOINT_STATE_CODES,
        )


def build_pipeline(settings: Settings) -> Pipeline:
    return WebhookPipeline(WebhookProvider(settings), settings)
