"""One-click unsubscribe links (RFC 8058): signed, expiring, and bound to one message.

A link's token is a JWT (HS256, ``UNSUBSCRIBE_SECRET``) whose subject is the message id and
nothing else: the message says whose preference and which event type, so a token cannot be
turned against another user, and the URL carries nothing personal. Workers mint it when
they build an email; the gateway reads it when the link is used.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import jwt

from shared.config import Settings
from shared.db.models import utcnow

AUDIENCE = "kai-messaging:unsubscribe"
ALGORITHMS = ["HS256"]
#: The path under PUBLIC_BASE_URL, the token after it.
PATH = "/unsubscribe/"


class InvalidLink(Exception):
    """Not a link we made (forged, altered, or for another purpose)."""


class ExpiredLink(InvalidLink):
    """A link we made, too old to be used."""


def enabled(settings: Settings) -> bool:
    return bool(settings.public_base_url and settings.unsubscribe_secret)


def link(settings: Settings, message_id: str, *, now: datetime | None = None) -> str | None:
    """The one-click URL for ``message_id``, or None when unsubscribe links are not set up."""
    if not enabled(settings):
        return None
    issued = now or utcnow()
    claims = {
        "sub": message_id,
        "aud": AUDIENCE,
        "iat": int(issued.timestamp()),
        "exp": int((issued + timedelta(days=settings.unsubscribe_link_days)).timestamp()),
    }
    token = jwt.encode(claims, str(settings.unsubscribe_secret), algorithm=ALGORITHMS[0])
    return f"{settings.public_base_url}{PATH}{token}"


def message_of(settings: Settings, token: str) -> str:
    """The message id a token names; :class:`ExpiredLink` or :class:`InvalidLink` otherwise."""
    if not settings.unsubscribe_secret:
        raise InvalidLink("unsubscribe links are not set up")
    try:
        claims = jwt.decode(
            token,
            str(settings.unsubscribe_secret),
            algorithms=ALGORITHMS,
            audience=AUDIENCE,
            options={"require": ["sub", "exp", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise ExpiredLink("this unsubscribe link has expired") from None
    except jwt.InvalidTokenError:
        raise InvalidLink("this is not an unsubscribe link of ours") from None
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise InvalidLink("this is not an unsubscribe link of ours")
    return subject
