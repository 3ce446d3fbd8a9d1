"""The provider contract.

A provider sends one message and either returns a :class:`SendResult` or raises
:class:`~shared.errors.TemporaryDeliveryError` (retry later) or
:class:`~shared.errors.PermanentDeliveryError` (fail now). It never returns a failure
value, never retries by itself, and puts a timeout on every network call (Dramatiq's time
limit cannot interrupt blocking I/O). Providers are built once per worker process and are
called from many worker threads at once, so they must be thread-safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.tracking import Claimed


@dataclass(frozen=True)
class SendResult:
    #: The provider's own id (SMTP Message-ID, Twilio SID, HTTP status …).
    provider_message_id: str | None = None
    #: True when the recipient itself confirmed receipt (a webhook's 2xx, an inbox row);
    #: False when a relay accepted it for onward delivery (SMTP, Twilio).
    delivered: bool = False
    #: Provider details worth keeping (response excerpt, timings …).
    details: dict[str, Any] = field(default_factory=dict)


class Provider(Protocol):
    def send(self, message: Claimed) -> SendResult:
        """Deliver ``message`` once. Raises a DeliveryError subclass on failure."""
        ...

    def close(self) -> None:
        """Release connections (called at worker shutdown)."""
        ...
