"""The provider contract.

A provider sends one :class:`Outgoing` message and either returns a :class:`SendResult` or
raises :class:`~shared.errors.TemporaryDeliveryError` (retry later) or
:class:`~shared.errors.PermanentDeliveryError` (fail now). It never returns a failure
value, never retries by itself, and puts one deadline on every attempt, whatever the peer
does. Providers are asyncio-native: built once per worker process, they run on the
process's event loop with many messages in flight at once over pooled connections, and
never block the loop.

Providers know the outside world only: they are handed the typed payload to send and never
read or write the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from shared.errors import DeliveryError

P_co = TypeVar("P_co", covariant=True)
P_contra = TypeVar("P_contra", contravariant=True)


@dataclass(frozen=True, slots=True)
class Outgoing(Generic[P_co]):
    """One attempt of one message, as a provider sees it."""

    #: The message id: the idempotency key providers pass on (webhook-id, Message-ID …).
    id: str
    attempt: int
    payload: P_co
    user_id: str | None = None
    #: An email's one-click unsubscribe URL (RFC 8058), when it has one.
    unsubscribe_url: str | None = None


@dataclass(frozen=True, slots=True)
class Exchange:
    """What one attempt sent and got back, for providers whose attempts are kept one by one
    (webhooks). Secrets in headers are already redacted."""

    url: str
    #: Empty when nothing was sent (the attempt stopped before the request).
    request_headers: dict[str, str] = field(default_factory=dict)
    request_body: str | None = None
    status: int | None = None
    response_headers: dict[str, str] | None = None
    #: At most the provider's read cap of the answer, decoded leniently.
    response_excerpt: str | None = None
    response_truncated: bool = False
    duration_ms: int | None = None
    #: Phases of the request in ms (dns, connect, tls, first_byte) where they were seen.
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendResult:
    #: The provider's own id (SMTP Message-ID, Twilio SID, HTTP status …).
    provider_message_id: str | None = None
    #: True when the recipient itself confirmed receipt (a webhook's 2xx, an inbox row);
    #: False when a relay accepted it for onward delivery (SMTP, Twilio).
    delivered: bool = False
    #: The request and answer, where the provider keeps them.
    exchange: Exchange | None = None
    #: Which of the channel's named providers took it (failover), and what failed before it
    #: in the same attempt.
    provider: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class FailedDispatch:
    """An attempt that did not deliver: why (the error's type decides retry or fail), and what
    went over the wire, where the provider keeps it."""

    error: DeliveryError
    exchange: Exchange | None = None


class Provider(Protocol[P_contra]):
    async def send(self, message: Outgoing[P_contra]) -> SendResult:
        """Deliver ``message`` once. Raises a DeliveryError subclass on failure."""
        ...

    async def close(self) -> None:
        """Release connections (called at worker shutdown, on the provider's loop)."""
        ...
