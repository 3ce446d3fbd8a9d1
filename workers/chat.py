"""The chat pool: Slack and Microsoft Teams messages (:mod:`workers.providers.chat`).

A message's webhook URL is stored sealed (:mod:`shared.chat_targets`); it is opened here, in
the worker, just before the provider posts it, and goes nowhere else. A webhook the chat tool
says was removed (404/410) is also taken out of the user's contacts it came from, so the
next message to that user is refused at the door instead of failing again.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from shared import chat_targets
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import UserContact
from shared.db.rls import system_scope
from shared.errors import TargetGone
from shared.logging import get_logger
from shared.payloads import ChatPayload
from workers.delivery.attempt import Delivery
from workers.delivery.ledger import Claim
from workers.delivery.pipeline import Pipeline
from workers.providers.base import FailedDispatch, Outgoing, SendResult
from workers.providers.chat import ChatProvider

log = get_logger(__name__)


class ChatPipeline(Pipeline):
    def __init__(self, settings: Settings) -> None:
        super().__init__(Channel.CHAT, ChatProvider(settings), settings)

    async def dispatch(self, delivery: Delivery, claim: Claim[Any]) -> SendResult | FailedDispatch:
        outcome = await super().dispatch(delivery, claim)
        chat = delivery.payload
        if (
            isinstance(outcome, FailedDispatch)
            and isinstance(outcome.error, TargetGone)
            and isinstance(chat, ChatPayload)
            and chat.webhook_url
            and delivery.user_id
        ):
            await asyncio.to_thread(self._forget_webhook, delivery.user_id, chat.webhook_url)
        return outcome

    def _forget_webhook(self, user_id: str, sealed_url: str) -> None:
        with system_scope(self.settings.database_url) as session:
            contact = session.get(UserContact, user_id, with_for_update=True)
            if contact is None:
                return
            for column in ("slack_webhook_url", "teams_webhook_url"):
                if getattr(contact, column) == sealed_url:
                    setattr(contact, column, None)
                    log.info("chat.webhook_removed_from_contacts", user_id=user_id, field=column)

    def outgoing(self, delivery: Delivery) -> Outgoing[Any]:
        message = delivery.outgoing()
        chat = message.payload
        if isinstance(chat, ChatPayload) and chat.webhook_url:
            opened = replace(chat, webhook_url=chat_targets.unseal(chat.webhook_url, self.settings))
            return replace(message, payload=opened)
        return message


def build_pipeline(settings: Settings) -> Pipeline:
    return ChatPipeline(settings)
