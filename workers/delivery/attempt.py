"""The value the pipeline's stages pass along: one claimed attempt of one message, with its
stored payload read into its typed form (:mod:`shared.payloads`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shared.channels import Channel
from shared.payloads import Content, Payload, Templated, load
from shared.tracking import Claimed
from workers.providers.base import Outgoing


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    channel: Channel
    recipient: str
    attempt: int
    max_attempts: int
    user_id: str | None
    event_type: str | None
    #: The content to send, or the template to render it from (until the render stage).
    payload: Payload
    #: From a ``critical`` rule: bypasses opt-outs, quiet hours and recipient limits.
    critical: bool = False
    #: Sent (or its rule) ``transactional``: never tracked.
    transactional: bool = False
    created_at: datetime | None = None

    @classmethod
    def of(cls, claim: Claimed) -> Delivery:
        """Raises :class:`~shared.payloads.PayloadError` for a payload unfit for its channel."""
        stored = load(claim.channel, claim.payload)
        return cls(
            id=claim.id,
            channel=claim.channel,
            recipient=claim.recipient,
            attempt=claim.attempt,
            max_attempts=claim.max_attempts,
            user_id=claim.user_id,
            event_type=claim.event_type,
            payload=stored.payload,
            critical=stored.critical,
            transactional=stored.transactional,
            created_at=claim.created_at,
        )

    @property
    def is_templated(self) -> bool:
        return isinstance(self.payload, Templated)

    def rendered(self, content: Content) -> Delivery:
        return replace(self, payload=content)

    def outgoing(self) -> Outgoing[Any]:
        """What the provider is handed: the rendered content and the message's identity."""
        if isinstance(self.payload, Templated):
            raise TypeError("a templated message reaches its provider only after the render stage")
        return Outgoing(id=self.id, attempt=self.attempt, payload=self.payload, user_id=self.user_id)
