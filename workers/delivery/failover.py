"""Several providers for one channel, tried in priority order (two SMTP relays, two Twilio
accounts …), with each provider's health judged by a circuit breaker.

An attempt goes to the first provider whose circuit is closed. A temporary failure (a 4xx
reply, a refused connection, a timeout, a 5xx or 429 from an API) counts against that
provider and the same attempt goes on to the next one at once: a message does not wait out
a retry delay because one relay is down, and once a provider's circuit opens it is passed
over without being asked until its cooldown lets one probe through. A permanent failure
ends the attempt where it happened: the recipient or the message is at fault (SMTP 5xx,
Twilio 400), and every provider would refuse it. When every provider failed the attempt
fails temporarily, and the pipeline's retries take over; when every circuit is open nothing
was tried, and the message waits for the first probe without spending an attempt
(:class:`~shared.errors.NotAttempted`).

An answer lost to a timeout may hide a message the provider did send; trying the next
provider risks a duplicate exactly as a retry on the same one would. What a failover may not
do is outlive the claim's lease (another worker would take the message while this one is
still sending it), so the providers asked after the first share what is left of a deadline
inside it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from shared import metrics
from shared.channels import Channel
from shared.config import Settings
from shared.errors import DeliveryError, NotAttempted, PermanentDeliveryError, TemporaryDeliveryError
from shared.logging import get_logger
from workers.delivery.breaker import CircuitBreaker, build_breaker
from workers.providers.base import Outgoing, Provider, SendResult

log = get_logger(__name__)

#: Redis key prefix of providers' breaker state.
BREAKER_PREFIX = "kai:provider-breaker:"

#: Share of the claim's lease the providers of one attempt may use between them.
LEASE_SHARE = 0.8


@dataclass(frozen=True)
class Named:
    name: str
    provider: Provider[Any]


class Failover:
    """A :class:`~workers.providers.base.Provider` made of named providers in priority order.

    With a single provider it only names it (the status and metrics say which sent each
    message) and keeps no breaker: there is nothing to fail over to, and the pipeline's
    retries already pace a provider that is down.
    """

    def __init__(
        self,
        channel: Channel,
        providers: Sequence[Named],
        settings: Settings,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        if not providers:
            raise ValueError("a failover needs at least one provider")
        self.channel = channel
        self.providers = list(providers)
        self._deadline_s = settings.delivery_lease_ms * LEASE_SHARE / 1000
        self._breaker = None
        if len(self.providers) > 1:
            self._breaker = breaker or build_breaker(
                settings,
                threshold=settings.providers.breaker_threshold,
                cooldown_ms=settings.providers.breaker_cooldown_ms,
                prefix=BREAKER_PREFIX,
            )

    def _key(self, named: Named) -> str:
        return f"{self.channel.value}:{named.name}"

    async def send(self, message: Outgoing[Any]) -> SendResult:
        if self._breaker is None:
            return await self._send_alone(message)
        deadline = time.monotonic() + self._deadline_s
        failures: list[tuple[str, DeliveryError]] = []
        shortest_wait: int | None = None
        for named in self.providers:
            wait = self._breaker.wait_ms(self._key(named))
            if wait > 0:
                self._count(named, "circuit_open")
                shortest_wait = wait if shortest_wait is None else min(shortest_wait, wait)
                continue
            # The first provider asked has its own deadline only, as a channel with one has;
            # those asked after it share what is left of the lease.
            remaining = None if not failures else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    result = await named.provider.send(message)
            except TimeoutError:
                error: DeliveryError = TemporaryDeliveryError(
                    "no answer before the attempt's deadline", code="provider_deadline"
                )
            except DeliveryError as exc:
                error = exc
            else:
                self._record(named, ok=True)
                self._count(named, "success")
                return replace(result, provider=named.name, note=_note(failures))
            error.provider = named.name
            if isinstance(error, PermanentDeliveryError):
                # Not the provider's fault: its health is untouched, and the message fails here.
                self._count(named, "permanent")
                raise _with_note(error, failures)
            self._record(named, ok=False)
            self._count(named, "temporary")
            failures.append((named.name, error))
            if named is not self.providers[-1]:
                metrics.PROVIDER_FAILOVERS.labels(self.channel.value, named.name).inc()
                log.info(
                    "delivery.failover",
                    message_id=message.id,
                    channel=self.channel.value,
                    provider=named.name,
                    code=error.code,
                )
        raise _exhausted(failures, shortest_wait)

    async def _send_alone(self, message: Outgoing[Any]) -> SendResult:
        """The one provider, as if it were not wrapped: its result and errors only named."""
        named = self.providers[0]
        try:
            result = await named.provider.send(message)
        except DeliveryError as exc:
            exc.provider = named.name
            raise
        return replace(result, provider=named.name)

    def _record(self, named: Named, *, ok: bool) -> None:
        if self._breaker is not None:
            self._breaker.record(self._key(named), ok=ok)

    def _count(self, named: Named, outcome: str) -> None:
        # Counted for channels with several providers only, as the metric says.
        metrics.PROVIDER_CALLS.labels(self.channel.value, named.name, outcome).inc()

    async def close(self) -> None:
        for named in self.providers:
            await named.provider.close()


def _note(failures: list[tuple[str, DeliveryError]]) -> str | None:
    """What failed before the provider that took the message, for its status."""
    if not failures:
        return None
    return "failed over: " + "; ".join(f"{name}: {error.message}" for name, error in failures)


def _with_note(error: DeliveryError, failures: list[tuple[str, DeliveryError]]) -> DeliveryError:
    """A permanent failure, saying where it happened and what failed before it."""
    error.message = f"{error.provider}: {error.message}"
    if failures:
        error.message += f" (after {_note(failures)})"
    return error


def _exhausted(failures: list[tuple[str, DeliveryError]], shortest_wait: int | None) -> DeliveryError:
    """Every provider failed temporarily or was open: the last failure, telling all of them."""
    if not failures:
        return NotAttempted(
            "every provider's circuit is open after repeated failures; not sent",
            code="provider_circuit_open",
            retry_after_ms=shortest_wait,
        )
    last = failures[-1][1]
    last.message = "; ".join(f"{name}: {error.message}" for name, error in failures)
    return last
