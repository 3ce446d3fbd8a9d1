"""Building the RFC 5322 message for an email, shared by the SMTP provider and the outbox.

Both providers must produce the very same message, so the headers a recipient (or a test)
sees do not depend on whether a real relay is configured.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime, getaddresses

from shared.errors import PermanentDeliveryError
from shared.payloads import EmailPayload
from workers.providers.base import Outgoing

#: Header carrying our message id, so a bounce or a support ticket can be traced back.
MESSAGE_ID_HEADER = "X-KAI-Message-Id"

#: Domain for Message-ID when the sender address has none (``make_msgid`` would otherwise
#: call ``socket.getfqdn()``, a DNS lookup, for every message).
FALLBACK_MESSAGE_ID_DOMAIN = "kai-messaging.invalid"


class OneLineHeader(UnstructuredHeader, BaseHeader):
    """A header written on one line whatever its length. The email package folds a long
    header with no space in it by turning it into RFC 2047 encoded-words, which makes a URL
    unreadable to the mailbox provider; RFC 5322 allows lines of up to 998 characters."""

    def fold(self, *, policy: Policy) -> str:
        return f"{self.name}: {self}{policy.linesep}"


_HEADERS = HeaderRegistry()
_HEADERS.map_to_type("list-unsubscribe", OneLineHeader)
#: The policy emails are built with: the default one, List-Unsubscribe kept on one line.
MESSAGE_POLICY = policy.default.clone(header_factory=_HEADERS)


def message_id_domain(sender: str) -> str:
    """The domain part of the sender address, used on the right of our Message-IDs."""
    addresses = getaddresses([sender])
    address = addresses[0][1] if addresses else ""
    _, _, domain = address.rpartition("@")
    domain = domain.strip().strip(".")
    return domain if domain and all(c.isalnum() or c in "-." for c in domain) else FALLBACK_MESSAGE_ID_DOMAIN


def rfc_message_id(message_id: str, sender: str) -> str:
    """A Message-ID derived from our message id. It is the same on every attempt on purpose:
    if an attempt whose outcome was unknown (a timeout after DATA) is retried, mailbox
    providers that de-duplicate on Message-ID show the mail once."""
    local = "".join(c if c.isalnum() or c in "-." else "-" for c in message_id)
    return f"<kai.{local}@{message_id_domain(sender)}>"


def build_email(message: Outgoing[EmailPayload], sender: str, *, now: datetime | None = None) -> EmailMessage:
    """The MIME message for an email.

    text only → text/plain; html only → text/html; both → multipart/alternative with the
    plain part first (clients show the last part they understand). A payload that cannot
    become a valid message raises PermanentDeliveryError: resending it cannot help.
    """
    payload = message.payload
    to, subject, text, html = payload.to, payload.subject, payload.text, payload.html
    if not to:
        raise PermanentDeliveryError("email payload has no recipient", code="email_invalid")
    if not (text or html):
        raise PermanentDeliveryError("email payload has neither text nor html", code="email_invalid")
    mime = EmailMessage(policy=MESSAGE_POLICY)
    try:
        mime["From"] = sender
        mime["To"] = to
        mime["Subject"] = subject
        mime["Date"] = format_datetime(now or datetime.now(UTC))
        mime["Message-ID"] = rfc_message_id(message.id, sender)
        mime[MESSAGE_ID_HEADER] = message.id
        if message.unsubscribe_url:
            # RFC 8058: mailbox providers POST "List-Unsubscribe=One-Click" to the URL.
            mime["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
            mime["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        if text and html:
            mime.set_content(text)
            mime.add_alternative(html, subtype="html")
        elif html:
            mime.set_content(html, subtype="html")
        else:
            mime.set_content(text)
    except (ValueError, TypeError) as exc:
        # The header registry refuses line breaks (header injection) and malformed addresses.
        raise PermanentDeliveryError(f"email cannot be built: {exc}", code="email_invalid") from exc
    return mime


def needs_smtputf8(mime: EmailMessage) -> bool:
    """True when an address has non-ASCII characters: such mail can only travel as SMTPUTF8
    (RFC 2047 encoded-words are not allowed inside addresses)."""
    for name in ("From", "To"):
        header = mime[name]
        for address in getattr(header, "addresses", ()):
            if isinstance(address, Address) and not address.addr_spec.isascii():
                return True
    return False


def to_bytes(mime: EmailMessage) -> bytes:
    """The message as it would go over the wire (CRLF line ends)."""
    return mime.as_bytes(policy=policy.SMTPUTF8 if needs_smtputf8(mime) else policy.SMTP)
