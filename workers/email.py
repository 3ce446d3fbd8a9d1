"""The email pool: SMTP through a pool of reused aiosmtplib connections, or ``.eml`` files in
``var/outbox/`` when no ``EMAIL_HOST`` is configured (the embedded default)."""

from __future__ import annotations

from shared.channels import Channel
from shared.config import Settings
from shared.payloads import EmailPayload
from workers.delivery.pipeline import Pipeline
from workers.providers.base import Provider


def build_provider(settings: Settings) -> Provider[EmailPayload]:
    if settings.email_host is None:
        from workers.providers.outbox import OutboxEmailProvider

        return OutboxEmailProvider(settings)
    from workers.providers.smtp import SmtpProvider

    return SmtpProvider(settings)


def build_pipeline(settings: Settings) -> Pipeline:
    return Pipeline(Channel.EMAIL, build_provider(settings), settings)
