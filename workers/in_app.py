"""The in-app pool: a message becomes a row in the user's inbox (``notifications``),
written by :class:`~workers.providers.inbox.InboxProvider`."""

from __future__ import annotations

from shared.channels import Channel
from shared.config import Settings
from workers.delivery.pipeline import Pipeline
from workers.providers.inbox import InboxProvider


def build_pipeline(settings: Settings) -> Pipeline:
    return Pipeline(Channel.IN_APP, InboxProvider(settings), settings)
