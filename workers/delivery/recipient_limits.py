"""Per-recipient limits: no more than N SMS to one phone number, or N emails to one address,
in any hour, whoever sends them, so a buggy caller cannot flood one person.

A message takes a reservation named after its id in its recipient's sliding one-hour window
just before it is sent, and gives it back if the send fails; so a retried message counts
once and only a message that was actually sent counts at all. Over the limit, the message
ends ``skipped`` with the code :data:`SKIP_CODE` (it is not retried: the next hour is no
better a time to deliver a flood).

Recipients are keyed by a SHA-256 hash of their normalised form, so phone numbers and
addresses are not written to Redis. Messages of a ``critical`` event rule (security alerts)
are neither limited nor counted: an operator marked them as having to arrive.

When Redis does not answer, messages are sent unchecked (see :mod:`shared.ratelimit.failopen`).
"""

from __future__ import annotations

import hashlib

from shared.channels import Channel
from shared.ratelimit import Decision, FailOpen, RateLimiter
from shared.ratelimit_settings import RECIPIENT_WINDOW_MS, RateLimitSettings
from workers.delivery.attempt import Delivery

#: ``error_code`` of a message skipped for its recipient's limit.
SKIP_CODE = "recipient_rate_limited"

#: Separates these hashes from any other SHA-256 of the same text.
_HASH_LABEL = b"kai-recipient-limit\x00"


def normalised(channel: Channel, recipient: str) -> str:
    """The form two spellings of one recipient share. Addresses and numbers were already
    normalised at the door (E.164; email-validator's form); the email local part is also
    case-folded, which every mainstream mailbox provider treats as the same mailbox."""
    value = recipient.strip()
    return value.lower() if channel is Channel.EMAIL else value.replace(" ", "")


def recipient_key(channel: Channel, recipient: str) -> str:
    digest = hashlib.sha256(_HASH_LABEL + normalised(channel, recipient).encode()).hexdigest()
    return f"recipient:{channel.value}:{digest[:32]}"


def hourly_limit(settings: RateLimitSettings, channel: Channel) -> int:
    """Messages per hour one recipient of ``channel`` may receive; 0 means no limit."""
    if channel is Channel.SMS:
        return settings.sms_recipient_per_hour
    if channel is Channel.EMAIL:
        return settings.email_recipient_per_hour
    if channel is Channel.PUSH:
        return settings.push_recipient_per_hour
    if channel is Channel.CHAT:
        return settings.chat_recipient_per_hour
    return 0


class RecipientLimits:
    def __init__(self, settings: RateLimitSettings, channel: Channel, limiter: RateLimiter) -> None:
        self.channel = channel
        self.limit = hourly_limit(settings, channel)
        self.guard = FailOpen(limiter, f"recipient_{channel.value}")

    def applies_to(self, delivery: Delivery) -> bool:
        return self.limit > 0 and bool(delivery.recipient) and not delivery.critical

    def reserve(self, delivery: Delivery) -> Decision | None:
        """The recipient's budget after taking ``delivery``'s place in it; None when unlimited
        (or unchecked because Redis is down)."""
        if not self.applies_to(delivery):
            return None
        return self.guard.reserve(
            recipient_key(self.channel, delivery.recipient), delivery.id, self.limit, RECIPIENT_WINDOW_MS
        )

    def release(self, delivery: Delivery) -> None:
        """Give ``delivery``'s place back: its attempt did not send it."""
        if self.applies_to(delivery):
            self.guard.release(recipient_key(self.channel, delivery.recipient), delivery.id)
