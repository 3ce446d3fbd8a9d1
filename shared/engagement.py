"""Engagement tracking links: the opaque tokens behind an email's tracking pixel and its
click redirects (``TRACKING_SECRET`` with ``PUBLIC_BASE_URL``).

A token is the message id, what it tracks and, for a click, the URL the link led to,
encrypted and authenticated with a Fernet key derived from ``TRACKING_SECRET``: nothing in a
tracking URL can be read (no address, no id), and no token can be made or altered without
the secret. The click redirect only ever sends a reader to the URL sealed in its token, so a
URL that was not in that message cannot be reached through it (no open redirect), and no
database row is needed to know where a link goes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Literal

from cryptography.fernet import Fernet, InvalidToken

from shared.config import Settings

Kind = Literal["open", "click"]

#: Where the gateway serves the pixel and the redirect.
OPEN_PATH = "/t/o/"
CLICK_PATH = "/t/c/"


class NotATrackingToken(ValueError):
    """Forged, altered, truncated, or made with another secret."""


@dataclass(frozen=True)
class Mark:
    message_id: str
    kind: Kind
    url: str | None = None


def enabled(settings: Settings) -> bool:
    return bool(settings.tracking_secret and settings.public_base_url)


def _fernet(settings: Settings) -> Fernet:
    if not settings.tracking_secret:
        raise NotATrackingToken("tracking is off (no TRACKING_SECRET)")
    # Fernet wants 32 url-safe base64 bytes; the secret is any length of at least 32 bytes.
    key = hashlib.sha256(b"kai-tracking\x00" + settings.tracking_secret.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(settings: Settings, mark: Mark) -> str:
    document = {"m": mark.message_id, "k": mark.kind} | ({"u": mark.url} if mark.url else {})
    return _fernet(settings).encrypt(json.dumps(document, separators=(",", ":")).encode()).decode()


def link(settings: Settings, mark: Mark) -> str:
    """The public URL of ``mark``: the pixel or the redirect."""
    path = OPEN_PATH if mark.kind == "open" else CLICK_PATH
    return f"{settings.public_base_url}{path}{seal(settings, mark)}"


def unseal(settings: Settings, token: str) -> Mark:
    try:
        document = json.loads(_fernet(settings).decrypt(token.encode()))
    except (InvalidToken, ValueError, UnicodeError):
        raise NotATrackingToken("not a tracking link of this service") from None
    kind, message_id, url = document.get("k"), document.get("m"), document.get("u")
    if (
        kind not in ("open", "click")
        or not isinstance(message_id, str)
        or (kind == "click") != isinstance(url, str)
    ):
        raise NotATrackingToken("not a tracking link of this service")
    return Mark(message_id, kind, url)
