"""The chat pool: Slack and Microsoft Teams messages (:mod:`workers.providers.chat`).

A message's webhook URL is stored sealed (:mod:`shared.chat_targets`); it is opened here, in
the worker, just before the provider posts it, and goes nowhere else.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from shared import chat_targets
from shared.channels import Channel
from shared.config import Settings
from shared.payloads import ChatPayload
from workers.delivery.attempt import Delivery
from workers.delivery.pipeline import Pipeline
from workers.providers.base import Outgoing
from workers.providers.chat import ChatProvider


class ChatPipeline(Pipeline):
    def __init__(self, settings: Settings) -> None:
        super().__init__(Channel.CHAT, ChatProvider(settings), settings)

    def outgoing(self, delivery: Delivery) -> Outgoing[Any]:
        message = delivery.outgoing()
        chat = message.payload
        if isinstance(chat, ChatPayload) and chat.webhook_url:
            opened = replace(chat, webhook_url=chat_targets.unseal(chat.webhook_url, self.settings))
            return replace(message, payload=opened)
        return message


def build_pipeline(settings: Settings) -> Pipeline:
    return ChatPipeline(settings)
