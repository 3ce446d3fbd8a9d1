"""The delivery pipeline every channel runs, as named stages with typed outcomes:

    claim → preferences → recipient limit → render → dispatch → record_success
              ↘ skipped      ↘ skipped         ↘ failed  ↘ record_failure → retry (delay | parked)
              ↘ deferred (quiet hours: parked)                         ↘ failed (+ dead-letter queue)
                                                         ↘ every provider resting: parked, attempt given back

It is broker-agnostic: the actor gives it a message id and a provider, and acts on the
:class:`Outcome` (acknowledge, retry after a delay, or dead-letter). Every decision is first
written to the message's ``notification_logs`` row (through :mod:`shared.tracking`, its one
writer), so the row is right even if the broker loses the acknowledgement. The claim and the
outcome go through the process's :class:`~workers.delivery.ledger.Ledger`, which writes them
in batches with the other worker threads' (two transactions per batch, not per message). The stages pass
a typed :class:`~workers.delivery.attempt.Delivery`; the dispatch stage ends in a
:class:`~workers.providers.base.SendResult` or a
:class:`~workers.providers.base.FailedDispatch`, never in a bare exception.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared import metrics, preferences, tracking
from shared.channels import Channel, Status
from shared.config import Settings
from shared.db.models import utcnow
from shared.db.session import session_scope
from shared.errors import (
    DeliveryError,
    NotAttempted,
    PermanentDeliveryError,
    RenderError,
    RenderLimitExceeded,
    TemporaryDeliveryError,
)
from shared.logging import get_logger
from shared.payloads import Content, PayloadError, Templated
from shared.ratelimit import RateLimiter, build_rate_limiter
from shared.templates import messages as template_messages
from shared.templates.budget import RenderLimits
from workers.delivery import recipient_limits
from workers.delivery.attempt import Delivery
from workers.delivery.ledger import Claim, Ledger, Record
from workers.delivery.retry import JITTER, AfterFailure, after_failure, retry_delay_ms
from workers.providers.base import FailedDispatch, Outgoing, Provider, SendResult

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
        self.limiter = limiter or build_rate_limiter(settings.redis_url)
        self.recipients = recipient_limits.RecipientLimits(settings.rate_limits, channel, self.limiter)
        self.ledger = self.make_ledger()

    def make_ledger(self) -> Ledger[Any]:
        """The batched reads and writes of this channel's rows; channels that load or keep more
        beside the row (webhooks) override this."""
        return Ledger(self.settings, self.channel.value)

    async def close(self) -> None:
        await self.ledger.stop()
        await self.provider.close()
        self.limiter.close()

    async def run(self, message_id: str) -> Outcome:
        # Whose message it is is known only once the row is read: claimed as the system.
        claim = await self.ledger.claim(message_id)
        if not isinstance(claim.result, tracking.Claimed):
            return self.not_claimed(message_id, claim.result)
        try:
            delivery = Delivery.of(claim.result)
        except PayloadError as exc:
            return await self.refuse_unreadable(claim.result, exc)
        try:
            stopped = await self.before_sending(delivery, claim)
            if stopped is not None:
                return stopped
            delivery = await self.render(delivery)
        except RenderError as exc:
            # The same data renders the same way next time: never retried.
            over = isinstance(exc, RenderLimitExceeded)
            code = "template_render_limit" if over else "template_render_error"
            failure = FailedDispatch(PermanentDeliveryError(str(exc), code=code))
            return await self.record_failure(delivery, failure)
        except Exception as exc:  # e.g. the database failing mid-stage: retry, then dead-letter
            return await self.record_failure(delivery, FailedDispatch(self.unexpected(delivery.id, exc)))
        dispatched = await self.dispatch(delivery, claim)
        if isinstance(dispatched, FailedDispatch):
            return await self.record_failure(delivery, dispatched)
        return await self.record_success(delivery, dispatched)

    async def before_sending(self, delivery: Delivery, claim: Claim[Any]) -> Outcome | None:
        """The stages that may stop a claimed message before it is sent: None to go on."""
        stopped = await self.check_preferences(delivery, claim.preferences)
        return stopped or await self.check_recipient_limit(delivery)

    async def dispatch(self, delivery: Delivery, claim: Claim[Any]) -> SendResult | FailedDispatch:
        """One call of the provider; channels with stages of their own around it override this."""
        started = time.perf_counter()
        try:
            result = await self.provider.send(self.outgoing(delivery))
        except DeliveryError as exc:
            self.observe_provider(started, exc)
            return FailedDispatch(exc)
        except Exception as exc:  # a bug or an unexpected library error: retry, then dead-letter
            error = self.unexpected(delivery.id, exc)
            self.observe_provider(started, None)
            return FailedDispatch(error)
        self.observe_provider(started, result)
        return result

    def outgoing(self, delivery: Delivery) -> Outgoing[Any]:
        """What the provider is handed; channels that add to it (an email's unsubscribe
        link) override this."""
        return delivery.outgoing()

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

    async def refuse_unreadable(self, claim: tracking.Claimed, exc: PayloadError) -> Outcome:
        """A stored payload that does not fit its channel can never be sent: fail it now."""
        finish = tracking.Finish(claim.id, claim.attempt, Status.FAILED, str(exc), "invalid_payload")
        await self.ledger.record(Record(finish))
        log.warning(
            "delivery.invalid_payload", message_id=claim.id, channel=self.channel.value, error=str(exc)
        )
        return Outcome(Action.ACK, reason="invalid_payload")

    async def check_preferences(
        self, delivery: Delivery, prefs: preferences.Preferences | None
    ) -> Outcome | None:
        """The user's preferences as they were when the message was claimed: None to go on,
        or the outcome of a message skipped (opted out) or deferred (quiet hours)."""
        if prefs is None:
            return None
        decision = preferences.decide(prefs, self.channel, delivery.event_type, critical=delivery.critical)
        if isinstance(decision, preferences.Suppress):
            await self.ledger.record(
                Record(
                    tracking.Finish(
                        delivery.id, delivery.attempt, Status.SKIPPED, decision.reason, decision.code
                    )
                )
            )
            log.info(
                "delivery.skipped", message_id=delivery.id, channel=self.channel.value, code=decision.code
            )
            return Outcome(Action.ACK, reason=decision.code)
        if isinstance(decision, preferences.Defer):
            await self.hold(delivery, decision.until, reason=decision.reason, code="deferred", park=True)
            log.info("delivery.deferred", message_id=delivery.id, until=decision.until.isoformat())
            return Outcome(Action.ACK, reason="deferred by quiet hours")
        return None

    async def hold(self, delivery: Delivery, until: datetime, *, reason: str, code: str, park: bool) -> None:
        """Put a claimed message back without counting the attempt: it was held back, not
        attempted. ``park`` hands it to the scheduler until then; otherwise the caller retries
        it through the broker."""
        finish = tracking.Finish(
            delivery.id,
            delivery.attempt,
            Status.QUEUED,
            f"delayed: {reason}",
            code,
            next_attempt_at=until,
            parked=park,
            refund=True,
        )
        await self.ledger.record(Record(finish))

    async def check_recipient_limit(self, delivery: Delivery) -> Outcome | None:
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
        await self.ledger.record(
            Record(tracking.Finish(delivery.id, delivery.attempt, Status.SKIPPED, reason, code))
        )
        metrics.RECIPIENT_RATE_LIMITED.labels(self.channel.value).inc()
        log.info("delivery.skipped", message_id=delivery.id, channel=self.channel.value, code=code)
        return Outcome(Action.ACK, reason=code)

    async def render(self, delivery: Delivery) -> Delivery:
        """A templated message's content, rendered from its pinned version (off the event
        loop: a template not yet cached is read from the database, and rendering is CPU)."""
        templated = delivery.payload
        if not isinstance(templated, Templated):
            return delivery

        def render() -> Content:
            with session_scope(self.settings.database_url) as session:
                return template_messages.render_payload(
                    session,
                    self.channel,
                    templated,
                    strict=self.settings.template_strict,
                    limits=RenderLimits.of(self.settings),
                )

        return delivery.rendered(await asyncio.to_thread(render))

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

    async def record_success(self, delivery: Delivery, result: SendResult) -> Outcome:
        status = Status.DELIVERED if result.delivered else Status.SENT
        finish = tracking.Finish(
            delivery.id,
            delivery.attempt,
            status,
            # What failed over before the provider that took it, kept for whoever reads the status.
            error=result.note,
            provider_message_id=result.provider_message_id,
            provider=result.provider,
        )
        await self.ledger.record(Record(finish, self.kept_beside(delivery, result)))
        log.info(
            "delivery.sent",
            message_id=delivery.id,
            channel=self.channel.value,
            attempt=delivery.attempt,
            provider=result.provider,
            provider_message_id=result.provider_message_id,
        )
        return Outcome(Action.ACK, reason="sent")

    async def record_failure(self, delivery: Delivery, failure: FailedDispatch) -> Outcome:
        # Not sent, so it must not count against the recipient (a retry takes a place again).
        self.recipients.release(delivery)
        error = failure.error
        if isinstance(error, NotAttempted):
            return await self.wait_for_providers(delivery, error)
        fields = {
            "message_id": delivery.id,
            "channel": self.channel.value,
            "attempt": delivery.attempt,
            "code": error.code,
            "error": error.message,
        }
        kept = self.kept_beside(delivery, failure)
        step = after_failure(error, delivery.attempt, delivery.max_attempts)
        if step is AfterFailure.FAIL:
            finish = tracking.Finish(
                delivery.id,
                delivery.attempt,
                Status.FAILED,
                error.message,
                error.code,
                provider=error.provider,
            )
            await self.ledger.record(Record(finish, kept))
            log.warning("delivery.failed_permanently", **fields)
            return Outcome(Action.ACK, reason=error.code)
        if step is AfterFailure.GIVE_UP:
            reason = f"gave up after {delivery.attempt} attempts: {error.message}"
            finish = tracking.Finish(
                delivery.id, delivery.attempt, Status.FAILED, reason, error.code, provider=error.provider
            )
            await self.ledger.record(Record(finish, kept))
            log.warning("delivery.retries_exhausted", **fields)
            return Outcome(Action.DEAD_LETTER, reason=error.code)
        delay = self.retry_delay(delivery, error)
        park = delay > self.settings.broker_delay_limit_ms
        finish = tracking.Finish(
            delivery.id,
            delivery.attempt,
            Status.QUEUED,
            error.message,
            error.code,
            provider=error.provider,
            next_attempt_at=utcnow() + timedelta(milliseconds=delay),
            parked=park,
        )
        await self.ledger.record(Record(finish, kept))
        log.info("delivery.retry_scheduled", delay_ms=delay, parked=park, **fields)
        if park:
            return Outcome(Action.ACK, reason="parked until due")
        return Outcome(Action.RETRY, delay_ms=delay, reason=error.code)

    async def wait_for_providers(self, delivery: Delivery, error: NotAttempted) -> Outcome:
        """Every provider is resting after repeated failures and nothing was sent: the message
        waits for the first probe without spending an attempt, parked with the scheduler (an
        outage may outlast any number of broker retries). The wait is spread so the messages
        held together do not all come back at once."""
        wait = error.retry_after_ms or self.policy.base_delay_ms
        until = utcnow() + timedelta(milliseconds=wait * random.uniform(1, 1 + JITTER))
        await self.hold(delivery, until, reason=error.message, code=error.code, park=True)
        log.info(
            "delivery.providers_resting",
            message_id=delivery.id,
            channel=self.channel.value,
            until=until.isoformat(),
        )
        return Outcome(Action.ACK, reason=error.code)

    def retry_delay(self, delivery: Delivery, error: DeliveryError) -> int:
        """Milliseconds before the next attempt of ``delivery``; channels with their own retry
        schedule override this."""
        return retry_delay_ms(self.policy, delivery.attempt, error)

    def kept_beside(self, delivery: Delivery, outcome: SendResult | FailedDispatch) -> Any:
        """What the channel writes beside the attempt's outcome, in the same transaction (the
        ledger's ``write_extra`` receives it); None for channels that keep nothing more."""
        return None
