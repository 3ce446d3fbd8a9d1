"""Credentials of the chat tools (the ``chat`` channel).

Slack: ``SLACK_BOT_TOKEN`` (a bot token, ``xoxb-…``, with the ``chat:write`` scope) posts
with ``chat.postMessage`` to a channel or, by a member id, to the user; ``SLACK_API_BASE``
points the official SDK elsewhere than ``https://slack.com/api/`` (tests, proxies). Slack
incoming webhooks and Microsoft Teams incoming webhooks / Workflows URLs need no
configuration: their URL is the credential, kept encrypted with WEBHOOK_ENCRYPTION_KEYS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from shared.envvars import int_setting

DEFAULT_CHAT_TIMEOUT_MS = 10_000
DEFAULT_SLACK_API_BASE = "https://slack.com/api/"


@dataclass(frozen=True)
class ChatSettings:
    slack_bot_token: str | None = field(default=None, repr=False)
    slack_api_base: str = DEFAULT_SLACK_API_BASE
    timeout_ms: int = DEFAULT_CHAT_TIMEOUT_MS

    @classmethod
    def from_env(cls, get: Callable[[str], str | None]) -> ChatSettings:
        base = get("SLACK_API_BASE") or DEFAULT_SLACK_API_BASE
        return cls(
            slack_bot_token=get("SLACK_BOT_TOKEN") or None,
            # The SDK joins method names onto the base: it must end with a slash.
            slack_api_base=base if base.endswith("/") else base + "/",
            timeout_ms=int_setting(get, "CHAT_TIMEOUT", DEFAULT_CHAT_TIMEOUT_MS, minimum=1),
        )
