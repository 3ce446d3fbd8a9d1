"""The delivery pipeline every channel runs, as named stages with typed outcomes:

    claim → provider.send → record_success
                          ↘ record_failure → retry (broker delay | parked for the scheduler)
                                           ↘ failed (+ dead-letter queue when retries ran out)

It is broker-agnostic: the actor gives it a message id and a provider, and acts on the
:class:`Outcome` (acknowledge, retry after a delay, or dead-letter). Every decision is first
written to the message's ``notification_logs`` row, so the row is right even if the broker
loses the acknowledgement.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from shared import tracking
from shared.channels import Channel
from shared.config import RetryPolicy, Settings
from shared.db.models import utcnow
from shared.db.session import session_scope
from shared.errors import DeliveryError, PermanentDeliveryError, TemporaryDeliveryError
from shared.logging import get_logger
from shared.providers.base import Provider, SendResult

log = get_logger(__name__)

#: Spread of retry delays (±20%) so messages that failed together don't retry together.
JITTER = 0.2


class Action(enum.Enum):
    ACK = "ack"  # done with this broker message (sent, failed, skipped, duplicate, parked)
    RETRY = "retry"  # re-deliver through the broker after ``delay_ms``
    DEAD_LETTER = "dead_letter"  # failed for good after retries: keep it in the DLQ for inspection


@dataclass(frozen=True)
class Outcome:
    action: Action
    delay_ms: int | None = None
    reason: str = ""


def backoff_ms(policy: RetryPolicy, attempt: int, *, rng: random.Random | None = None) -> int:
    """Exponential backoff after ``attempt`` failed attempts, with jitter, capped."""
    base = min(policy.base_delay_ms * 2 ** max(attempt - 1, 0), policy.max_delay_ms)
    spread = (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return max(1, min(int(base * spread), policy.max_delay_ms))


def retry_delay_ms(policy: RetryPolicy, attempt: int, error: DeliveryError) -> int:
    """The provider's own hint (Retry-After) wins, clamped to the policy's ceiling."""
    hint = error.retry_after_ms if isinstance(error, TemporaryDeliveryError) else None
    if hint is not None:
        return max(0, min(hint, policy.max_delay_ms))
    return backoff_ms(policy, attempt)


class Pipeline:
    """Delivers messages of one channel with one provider."""

    def __init__(self, channel: Channel, provider: Provider, settings: Settings) -> None:
        self.channel = channel
        self.provider = provider
        self.settings = settings
        self.policy = settings.retry_policy(channel)
        self.lease = timedelta(milliseconds=settings.delivery_lease_ms)

    def run(self, message_id: str) -> Outcome:
        claim = self.claim(message_id)
        if not isinstance(claim, tracking.Claimed):
            return self.not_claimed(message_id, claim)
        try:
            result = self.provider.send(claim)
        except DeliveryError as exc:
            return self.record_failure(claim, exc)
        except Exception as exc:  # a bug or an unexpected library error: retry, then dead-letter
            log.exception("delivery.unexpected_error", message_id=message_id, channel=self.channel.value)
            first_line = (str(exc).splitlines() or [""])[0]
            error = TemporaryDeliveryError(f"{type(exc).__name__}: {first_line}", code="internal_error")
            return self.record_failure(claim, error)
        return self.record_success(claim, result)

    def claim(self, message_id: str) -> tracking.ClaimResult:
        with session_scope(self.settings.database_url) as session:
            return tracking.claim(session, message_id, self.lease)

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

    def record_success(self, claim: tracking.Claimed, result: SendResult) -> Outcome:
        with session_scope(self.settings.database_url) as session:
            self.after_attempt(session, claim, result.details, error=None)
            tracking.mark_sent(
                session,
                claim.id,
                claim.attempt,
                provider_message_id=result.provider_message_id,
                delivered=result.delivered,
            )
        log.info(
            "delivery.sent",
            message_id=claim.id,
            channel=self.channel.value,
            attempt=claim.attempt,
            provider_message_id=result.provider_message_id,
        )
        return Outcome(Action.ACK, reason="sent")

    def record_failure(self, claim: tracking.Claimed, error: DeliveryError) -> Outcome:
        details: dict[str, Any] = getattr(error, "details", {}) or {}
        fields = {
            "message_id": claim.id,
            "channel": self.channel.value,
            "attempt": claim.attempt,
            "code": error.code,
            "error": error.message,
        }
        if isinstance(error, PermanentDeliveryError):
            with session_scope(self.settings.database_url) as session:
                self.after_attempt(session, claim, details, error=error)
                tracking.mark_failed(session, claim.id, claim.attempt, error=error.message, code=error.code)
            log.warning("delivery.failed_permanently", **fields)
            return Outcome(Action.ACK, reason=error.code)
        if claim.attempt >= claim.max_attempts:
            reason = f"gave up after {claim.attempt} attempts: {error.message}"
            with session_scope(self.settings.database_url) as session:
                self.after_attempt(session, claim, details, error=error)
                tracking.mark_failed(session, claim.id, claim.attempt, error=reason, code=error.code)
            log.warning("delivery.retries_exhausted", **fields)
            return Outcome(Action.DEAD_LETTER, reason=error.code)
        delay = self.retry_delay(claim, error)
        park = delay > self.settings.broker_delay_limit_ms
        with session_scope(self.settings.database_url) as session:
            self.after_attempt(session, claim, details, error=error)
            tracking.mark_retry(
                session,
                claim.id,
                claim.attempt,
                error=error.message,
                code=error.code,
                at=utcnow() + timedelta(milliseconds=delay),
                park=park,
            )
        log.info("delivery.retry_scheduled", delay_ms=delay, parked=park, **fields)
        if park:
            return Outcome(Action.ACK, reason="parked until due")
        return Outcome(Action.RETRY, delay_ms=delay, reason=error.code)

    def retry_delay(self, claim: tracking.Claimed, error: DeliveryError) -> int:
        """Milliseconds before the next attempt of ``claim``; channels with their own retry
        schedule override this."""
        return retry_delay_ms(self.policy, claim.attempt, error)

    def after_attempt(
        self, session: Any, claim: tracking.Claimed, details: dict[str, Any], error: DeliveryError | None
    ) -> None:
        """Hook for channels that keep a per-attempt record (webhooks); in the same transaction
        as the status change."""
