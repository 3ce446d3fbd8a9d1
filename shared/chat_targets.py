"""Where a chat message goes, and keeping chat webhook URLs secret.

An incoming webhook URL (Slack's, Teams') is a credential: whoever holds it posts into the
channel. It is sealed with WEBHOOK_ENCRYPTION_KEYS wherever it is stored (a message's payload,
a user's contacts, a rule), opened only by the chat worker just before sending, and shown
masked (scheme and host) everywhere else, including the message's recipient column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shared.config import Settings
from shared.db.models import UserContact
from shared.errors import ValidationError
from shared.webhooks import secretbox


@dataclass(frozen=True, slots=True)
class ChatTarget:
    service: str
    #: A Slack channel or member id (posted with the bot token).
    channel: str | None = None
    #: A sealed webhook URL.
    sealed_url: str | None = None


#: Ends a masked URL (``https://hooks.slack.com/…``).
MASK_SUFFIX = "/…"


def seal(url: str, settings: Settings) -> str:
    return secretbox.seal(url, settings.webhooks.encryption_keys)


def unseal(stored: str, settings: Settings) -> str:
    return secretbox.unseal(stored, settings.webhooks.encryption_keys)


def mask(url: str | None) -> str | None:
    """What may be shown of a webhook URL: its scheme and host, never the path that is the
    secret."""
    if not url:
        return url
    if url.startswith(secretbox.ENCRYPTED_PREFIX):
        return "(sealed)"
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{MASK_SUFFIX}" if parts.hostname else MASK_SUFFIX


def of_contact(contact: UserContact | None, service: str) -> ChatTarget | None:
    """The user's own place on ``service``: Slack prefers the member id (a direct message
    from the bot) to a webhook; Teams has webhooks only."""
    if contact is None:
        return None
    if service == "slack" and contact.slack_user_id:
        return ChatTarget(service, channel=contact.slack_user_id)
    url = contact.slack_webhook_url if service == "slack" else contact.teams_webhook_url
    return ChatTarget(service, sealed_url=url) if url else None


def recipient(service: str, channel: str | None, url: str | None, user_id: str | None) -> str:
    """The message's recipient as its row shows it: never a webhook URL's secret path."""
    if channel:
        return f"{service}:{channel}"
    if user_id:
        return f"{service}:user:{user_id}"
    return f"{service}:{mask(url)}"


def seal_or_keep(given: str | None, stored: str | None, field: str, keys: Sequence[str]) -> str | None:
    """The value to store for a webhook URL given to the API: sealed, or, for the masked form
    the API showed, the one already stored."""
    if given is None:
        return None
    if given.endswith(MASK_SUFFIX):
        if stored is None:
            message = "give the webhook URL itself: none is stored to keep"
            raise ValidationError(message, [{"field": field, "message": message}])
        return stored
    return secretbox.seal(given, keys)


def shown(stored: str | None, keys: Sequence[str]) -> str | None:
    """A stored (sealed) webhook URL as the API shows it: masked."""
    if stored is None:
        return None
    try:
        return mask(secretbox.unseal(stored, keys))
    except Exception:  # a key rotated away: still say that one is stored
        return "https://(sealed)" + MASK_SUFFIX


def of_rule(chat: dict[str, Any] | None) -> ChatTarget | None:
    """A rule's own chat destination (``notification_rules.chat``), if it names one."""
    if not chat or not (chat.get("channel") or chat.get("webhookUrl")):
        return None
    return ChatTarget(str(chat.get("service") or "slack"), chat.get("channel"), chat.get("webhookUrl"))
