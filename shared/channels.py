"""The delivery channels, their queues and their states."""

from __future__ import annotations

import enum


class Channel(enum.StrEnum):
    """A delivery channel. The value is also the RabbitMQ queue its worker pool consumes."""

    EMAIL = "email"
    SMS = "sms"
    WEBHOOK = "webhook"
    IN_APP = "in_app"
    #: Web push, Firebase Cloud Messaging and APNs: every device the user registered.
    PUSH = "push"
    #: Slack and Microsoft Teams.
    CHAT = "chat"

    @property
    def queue_name(self) -> str:
        return self.value

    @property
    def actor_name(self) -> str:
        return f"deliver_{self.value}"

    @classmethod
    def parse(cls, raw: str) -> Channel:
        """Accept ``in_app`` and ``in-app`` alike (the HTTP path uses the dash)."""
        try:
            return cls(raw.strip().lower().replace("-", "_"))
        except ValueError:
            choices = ", ".join(c.value for c in cls)
            raise ValueError(f"unknown channel {raw!r} (choose from {choices})") from None


class Status(enum.StrEnum):
    """Where a message is in its life: ``queued → processing → sent|delivered`` or ``failed|skipped``.
    A message waiting for its next attempt is ``queued`` again, with ``next_attempt_at`` set.
    A scheduled send waits as ``scheduled`` until the scheduler publishes it (then ``queued``);
    one canceled before it started ends as ``canceled``."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    PROCESSING = "processing"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({Status.SENT, Status.DELIVERED, Status.FAILED, Status.SKIPPED, Status.CANCELED})
