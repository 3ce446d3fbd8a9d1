"""The inbox provider: an in-app message is delivered by adding it to the user's inbox.

The inbox itself (the ``notifications`` rows and the realtime announcement of a new one)
is handed in as an :class:`Inbox`, so this provider, like every other, knows nothing of
storage; :mod:`workers.in_app` gives it the database-backed one.
"""

from __future__ import annotations

from typing import Protocol

from shared.errors import PermanentDeliveryError
from shared.payloads import InAppPayload
from workers.providers.base import Outgoing, SendResult


class Inbox(Protocol):
    async def add(self, owner: str, message_id: str, payload: InAppPayload) -> str:
        """Put the notification for ``message_id`` in ``owner``'s inbox once and return its
        id; a message added before returns the existing id. Raises
        :class:`~shared.errors.TemporaryDeliveryError` when the inbox cannot be reached."""
        ...


class InboxProvider:
    """Delivers into an :class:`Inbox`; a notification in the inbox counts as delivered."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def send(self, message: Outgoing[InAppPayload]) -> SendResult:
        if not message.user_id:
            raise PermanentDeliveryError("an in-app message needs a user", code="in_app_invalid")
        notification_id = await self.inbox.add(message.user_id, message.id, message.payload)
        return SendResult(provider_message_id=notification_id, delivered=True)

    async def close(self) -> None:
        pass
