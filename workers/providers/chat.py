"""The chat channel's provider: Slack or Microsoft Teams, by the message's ``service``.

Slack messages for the bot go to ``var/outbox/`` while SLACK_BOT_TOKEN is unset (the embedded
default); webhook URLs carry their own credential and are always posted to.
"""

from __future__ import annotations

from shared.config import Settings
from shared.errors import PermanentDeliveryError
from shared.payloads import ChatPayload
from workers.providers.base import Outgoing, Provider, SendResult


class ChatProvider:
    def __init__(self, settings: Settings) -> None:
        from workers.providers.slack import SlackProvider
        from workers.providers.teams import TeamsProvider

        self.slack = SlackProvider(settings)
        self.teams = TeamsProvider(settings)
        self.bot: Provider[ChatPayload] = self.slack
        if not settings.chat.slack_bot_token:
            from workers.providers.outbox import OutboxChatProvider

            self.bot = OutboxChatProvider(settings)

    async def send(self, message: Outgoing[ChatPayload]) -> SendResult:
        chat = message.payload
        if chat.service == "teams":
            return await self.teams.send(message)
        if chat.service == "slack":
            return await (self.slack if chat.webhook_url else self.bot).send(message)
        raise PermanentDeliveryError(f"unknown chat service {chat.service!r}", code="chat_invalid")

    async def close(self) -> None:
        for provider in {id(p): p for p in (self.slack, self.teams, self.bot)}.values():
            await provider.close()
