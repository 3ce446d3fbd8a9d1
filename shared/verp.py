"""Variable envelope return paths (VERP): each email's envelope sender names its message.

With ``EMAIL_BOUNCE_ADDRESS=bounces@notify.example.com`` an email goes out with the envelope
sender ``bounces+<message id>@notify.example.com``, so whatever comes back to it (a delivery
status notification, an auto-reply) is addressed to the message itself: a bounce is matched
even when the reporting server returns none of the original's headers. The address's domain
must route to a mailbox or to ``kai-messaging bounces`` (the listener that reads them).
"""

from __future__ import annotations

import re

from shared.errors import ConfigError

_MESSAGE_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def check(address: str) -> str:
    """``EMAIL_BOUNCE_ADDRESS`` as given, or :class:`ConfigError` saying why it cannot carry
    message ids."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain or "+" in local or " " in address.strip():
        raise ConfigError(
            f"EMAIL_BOUNCE_ADDRESS must be a plain address such as bounces@notify.example.com "
            f"(no '+': the message id goes there), got {address!r}"
        )
    return address.strip()


def sender(bounce_address: str, message_id: str) -> str:
    """The envelope sender of message ``message_id``."""
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{message_id}@{domain}"


def message_id(bounce_address: str, recipient: str) -> str | None:
    """The message a reply to ``recipient`` is about, when ``recipient`` is one of our return
    paths (``<bounces+id@domain>`` as a header may write it); None otherwise."""
    local, _, domain = bounce_address.rpartition("@")
    found = re.search(rf"{re.escape(local)}\+({_MESSAGE_ID.pattern})@{re.escape(domain)}", recipient, re.I)
    return found.group(1).lower() if found else None


def is_ours(bounce_address: str, recipient: str) -> bool:
    """Whether mail for ``recipient`` belongs to the return path (the address or a VERP form)."""
    return (
        recipient.strip("<> ").lower() == bounce_address.lower()
        or message_id(bounce_address, recipient) is not None
    )
