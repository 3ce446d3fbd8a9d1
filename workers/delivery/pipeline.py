"""The delivery pipeline every channel runs, as named stages with typed outcomes:

    claim → preferences → recipient limit → render → dispatch → record_success
              ↘ skipped      ↘ skipped         ↘ failed  ↘ record_failure → retry (delay | parked)
              ↘ deferred (quiet hours: parked)                         ↘ failed (+ dead-letter queue)

It is broker-agnostic: the actor gives it a message id and a provider, and acts on the
:class:`Outcome` (acknowledge, retry after a delay, or dead-letter). Every decision is first
written to the message's ``notification_logs`` row (through :mod:`shared.tracking`, its one
writer), so the row is right even if the broker loses the acknowledgement. The stages pass
a typed :class:`~workers.delivery.attempt.Delivery`; the dispatch stage ends in a
:class:`~workers.providers.base.SendResult` or a
:class:`~workers.providers.base.FailedDispatch`, never in a bare exception.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from shared import metrics, preferences, tracking
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import utcnow
from shared.db.rls import system_scope, user_scope
from shared.db.session import session_scope
from shared.errors import (
    DeliveryError,
    PermanentDeliveryError,
    RenderError,
    RenderLimitExceeded,
    TemporaryDeliveryError,
)
from shared.logging import get_logger
from shared.payloads import PayloadError, Templated
from shared.ratelimit import RateLimiter, build_rate_limiter
from shared.templates import messages as template_messages
from shared.templates.budget import RenderLimits
from workers.delivery import recipient_limits
from workers.delivery.attempt import Delivery
from workers.delivery.retry import AfterFailure, after_failure, retry_delay_ms
from workers.providers.base import FailedDispatch, Provider, SendResult

log = get_logger(__name__)


class Action(enum.Enum):
    ACK = "ack"  # done with this broker message (sent, failed, skipped, duplicate, parked)
    RETRY = "retry"  # re-deliver through the broker after ``delay_ms``
    DEAD_LETTER = "dead_letter"  # failed for good after retries: keep it in the DLQ for inspection


@dataclass(frozen=True)
class Outcome:
    action: Action
    delay_ms: int | None = None
    reason: str = ""


class Pipeline:
    """Delivers messages of one channel with one provider."""

    def __init__(
        self,
        channel: Channel,
        provider: Provider[Any],
        settings: Settings,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.channel = channel
        self.provider = provider
        self.settings = settings
        self.policy = settings.retry_policy(channel)
        self.lease = timedelta(milliseconds=settings.delivery_lease_ms)
        self.limiter = limiter or build_rate_limiter(settings.redis_url)
        self.recipients = recipient_limits.RecipientLimits(settings.rate_limits, channel, self.limiter)

    def run(self, message_id: str) -> Outcome:
        claim = self.claim(message_id)
        if not isinstance(claim, tracking.Claimed):
            return self.not_claimed(message_id, claim)
        try:
            delivery = Delivery.of(claim)
        except PayloadError as exc:
            return self.refuse_unreadable(claim, exc)
        try:
            stopped = self.check_preferences(delivery) or self.check_recipient_limit(delivery)
            if stopped is not None:
                return stopped
            delivery = self.render(delivery)
        except RenderError as exc:
            # The same data renders the same way next time: never retried.
            over = isinstance(exc, RenderLimitExceeded)
            code = "template_render_limit" if over else "template_render_error"
            return self.record_failure(delivery, FailedDispatch(PermanentDeliveryError(str(exc), code=code)))
        except Exception as exc:  # e.g. the database failing mid-stage: retry, then dead-letter
            return self.record_failure(delivery, FailedDispatch(self.unexpected(delivery.id, exc)))
        dispatched = self.dispatch(delivery)
        if isinstance(dispatched, FailedDispatch):
            return self.record_failure(delivery, dispatched)
        return self.record_success(delivery, dispatched)

    def dispatch(self, delivery: Delivery) -> SendResult | FailedDispatch:
        """One call of the provider; channels with stages of their own around it override this."""
        started = time.perf_counter()
        try:
            result = self.provider.send(delivery.outgoing())
        except DeliveryError as exc:
            self.observe_provider(started, exc)
            return FailedDispatch(exc)
        except Exception as exc:  # a bug or an unexpected library error: retry, then dead-letter
            error = self.unexpected(delivery.id, exc)
            self.observe_provider(started, None)
            return FailedDispatch(error)
        self.observe_provider(started, result)
        return result

    def observe_provider(self, started: float, outcome: SendResult | DeliveryError | None) -> None:
        """Time a provider call, labelled success, permanent, temporary or error (a bug)."""
        if isinstance(outcome, SendResult):
            label = "success"
        elif outcome is None:
            label = "error"
        else:
            label = "permanent" if isinstance(outcome, PermanentDeliveryError) else "temporary"
        elapsed = time.perf_counter() - started
        metrics.PROVIDER_LATENCY.labels(self.channel.value, label).observe(elapsed)

    def unexpected(self, message_id: str, exc: Exception) -> TemporaryDeliveryError:
        log.exception("delivery.unexpected_error", message_id=message_id, channel=self.channel.value)
        first_line = (str(exc).splitlines() or [""])[0]
        return TemporaryDeliveryError(f"{type(exc).__name__}: {first_line}", code="internal_error")

    def claim(self, message_id: str) -> tracking.ClaimResult:
        # Whose message it is is known only once the row is read: claim as the system.
        with system_scope(self.settings.database_url) as session:
            return tracking.claim(session, message_id, self.lease)

    def refuse_unreadable(self, claim: tracking.Claimed, exc: PayloadError) -> Outcome:
        """A stored payload that does not fit its channel can never be sent: fail it now."""
        with system_scope(self.settings.database_url) as session:
            tracking.mark_failed(session, claim.id, claim.attempt, error=str(exc), code="invalid_payload")
        log.warning(
            "delivery.invalid_payload", message_id=claim.id, channel=self.channel.value, error=str(exc)
        )
        return Outcome(Action.ACK, reason="invalid_payload")

    def check_preferences(self, delivery: Delivery) -> Outcome | None:
        """The user's preferences as they are now: None to go on, or the outcome of a
        message skipped (opted out) or deferred (quiet hours)."""
        if not delivery.user_id:
            return None
        with user_scope(self.settings.database_url, delivery.user_id) as session:
            decision = preferences.decide(
                preferences.load(session, delivery.user_id),
                self.channel,
                delivery.event_type,
                critical=delivery.critical,
            )
            if isinstance(decision, preferences.Suppress):
                tracking.mark_skipped(
                    session, delivery.id, delivery.attempt, reason=decision.reason, code=decision.code
                )
            elif isinstance(decision, preferences.Defer):
                tracking.defer(
                    session, delivery.id, delivery.attempt, until=decision.until, reason=decision.reason
                )
        if isinstance(decision, preferences.Suppress):
            log.info(
                "delivery.skipped", message_id=delivery.id, channel=self.channel.value, code=decision.code
            )
            return Outcome(Action.ACK, reason=decision.code)
        if isinstance(decision, preferences.Defer):
            log.info("delivery.deferred", message_id=delivery.id, until=decision.until.isoformat())
            return Outcome(Action.ACK, reason="deferred by quiet hours")
        return None

    def check_recipient_limit(self, delivery: Delivery) -> Outcome | None:
        """Take the message's place in its recipient's hourly budget: None to go on, or the
        outcome of a message skipped because the recipient has had enough this hour."""
        decision = self.recipients.reserve(delivery)
        if decision is None or decision.allowed:
            return None
        reason = (
            f"the recipient already received {decision.limit} {self.channel.value} messages "
            f"in the last hour (limit per recipient)"
        )
        code = recipient_limits.SKIP_CODE
        with system_scope(self.settings.database_url) as session:
            tracking.mark_skipped(session, delivery.id, delivery.attempt, reason=reason, code=code)
        metrics.RECIPIENT_RATE_LIMITED.labels(self.channel.value).inc()
        log.info("delivery.skipped", message_id=delivery.id, channel=self.channel.value, code=code)
        return Outcome(Action.ACK, reason=code)

    def render(self, delivery: Delivery) -> Delivery:
        """A templated message's content, rendered from its pinned version."""
        if not isinstance(delivery.payload, Templated):
            return delivery
        with session_scope(self.settings.database_url) as session:
            content = template_messages.render_payload(
                session,
                self.channel,
                delivery.payload,
                strict=self.settings.template_strict,
                limits=RenderLimits.of(self.settings),
            )
        return delivery.rendered(content)

    def not_claimed(self, message_id: str, claim: tracking.ClaimResult) -> Outcome:
        if isinstance(claim, tracking.AlreadyFinal):
            log.info("delivery.duplicate", message_id=message_id, status=claim.status.value)
            return Outcome(Action.ACK, reason=f"already {claim.status.value}")
        if isinstance(claim, tracking.Busy):
            # Another copy is being worked on (or its worker died and the lease has not run
            # out yet): look again once the lease ends.
            wait = max(100, int((claim.until - utcnow()).total_seconds() * 1000) + 100)
            log.info("delivery.busy", message_id=message_id, retry_in_ms=wait)
            return Outcome(Action.RETRY, delay_ms=wait, reason="claimed by another worker")
        log.warning("delivery.unknown_message", message_id=message_id, channel=self.channel.value)
        return Outcome(Action.ACK, reason="no such message")

    def record_success(self, delivery: Delivery, result: SendResult) -> Outcome:
        with system_scope(self.settings.database_url) as session:
            self.after_attempt(session, delivery, result)
            tracking.mark_sent(
                session,
                delivery.id,
                delivery.attempt,
                provider_message_id=result.provider_message_id,
                delivered=result.delivered,
            )
        log.info(
            "delivery.sent",
            message_id=delivery.id,
            channel=self.channel.value,
            attempt=delivery.attempt,
            provider_message_id=result.provider_message_id,
        )
        return Outcome(Action.ACK, reason="sent")

    def record_failure(self, delivery: Delivery, failure: FailedDispatch) -> Outcome:
        # Not sent, so it must not count against the recipient (a retry takes a place again).
        self.recipients.release(delivery)
        error = failure.error
        fields = {
            "message_id": delivery.id,
            "channel": self.channel.value,
            "attempt": delivery.attempt,
            "code": error.code,
            "error": error.message,
        }
        step = after_failure(error, delivery.attempt, delivery.max_attempts)
        if step is AfterFailure.FAIL:
            with system_scope(self.settings.database_url) as session:
                self.after_attempt(session, delivery, failure)
                tracking.mark_failed(
                    session, delivery.id, delivery.attempt, error=error.message, code=error.code
                )
            log.warning("delivery.failed_permanently", **fields)
            return Outcome(Action.ACK, reason=error.code)
        if step is AfterFailure.GIVE_UP:
            reason = f"gave up after {delivery.attempt} attempts: {error.message}"
            with system_scope(self.settings.database_url) as session:
                self.after_attempt(session, delivery, failure)
                tracking.mark_failed(session, delivery.id, delivery.attempt, error=reason, code=error.code)
            log.warning("delivery.retries_exhausted", **fields)
            return Outcome(Action.DEAD_LETTER, reason=error.code)
        delay = self.retry_delay(delivery, error)
        park = delay > self.settings.broker_delay_limit_ms
        with system_scope(self.settings.database_url) as session:
            self.after_attempt(session, delivery, failure)
            tracking.mark_retry(
                session,
                delivery.id,
                delivery.attempt,
                error=error.message,
                code=error.code,
                at=utcnow() + timedelta(milliseconds=delay),
                park=park,
            )
        log.info("delivery.retry_scheduled", delay_ms=delay, parked=park, **fields)
        if park:
            return Outcome(Action.ACK, reason="parked until due")
        return Outcome(Action.RETRY, delay_ms=delay, reason=error.code)

    def retry_delay(self, delivery: Delivery, error: DeliveryError) -> int:
        """Milliseconds before the next attempt of ``delivery``; channels with their own retry
        schedule override this."""
        return retry_delay_ms(self.policy, delivery.attempt, error)

    def after_attempt(
        self, session: Session, delivery: Delivery, outcome: SendResult | FailedDispatch
    ) -> None:
        """Hook for channels that keep a per-attempt record (webhooks); in the same transaction
        as the status change."""
