"""One attempt of one message as the delivery pipeline hands it to a provider."""

from __future__ import annotations

import uuid
from typing import TypeVar

from workers.providers.base import Outgoing

P = TypeVar("P")


def outgoing(payload: P, message_id: str | None = None, *, user_id: str | None = None) -> Outgoing[P]:
    return Outgoing(id=message_id or str(uuid.uuid4()), attempt=1, payload=payload, user_id=user_id)
