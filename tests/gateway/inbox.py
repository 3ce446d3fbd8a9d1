"""Helpers for inbox tests: user tokens and notifications written straight into the table."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta

import jwt

from shared.config import Settings
from shared.db.models import Notification, utcnow
from shared.db.rls import system_scope
from tests.conftest import USER_TOKEN_SECRET

#: Lifetime of the user tokens tests mint, in seconds.
TOKEN_LIFETIME_SECONDS = 3600


def user_token(user_id: str, secret: str = USER_TOKEN_SECRET) -> str:
    claims = {"sub": user_id, "exp": int(time.time()) + TOKEN_LIFETIME_SECONDS}
    return jwt.encode(claims, secret, algorithm="HS256")


def user_headers(user_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user_token(user_id)}"}


def seed(
    settings: Settings,
    user_id: str,
    count: int,
    *,
    type: str = "info",
    start: datetime | None = None,
    step: timedelta = timedelta(seconds=1),
    prefix: str = "n",
) -> list[str]:
    """Insert ``count`` notifications for ``user_id``, one ``step`` apart (oldest first);
    returns their ids oldest first. Titles are ``<prefix>0``, ``<prefix>1``, …"""
    first = start or utcnow() - step * count
    ids = []
    with system_scope(settings.database_url) as session:
        for i in range(count):
            ident = str(uuid.uuid4())
            ids.append(ident)
            session.add(
                Notification(
                    id=ident,
                    user_id=user_id,
                    title=f"{prefix}{i}",
                    message=f"message {i}",
                    type=type,
                    action_url=None,
                    data={"i": i},
                    created_at=first + step * i,
                )
            )
    return ids
