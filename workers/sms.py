"""The SMS pool: Twilio's Messages API through the twilio SDK (``TWILIO_API_BASE`` may point it
at any Twilio-compatible server), then the Twilio accounts or HTTP gateways of
``SMS_FALLBACK_PROVIDERS`` when it fails (:mod:`workers.delivery.failover`); or
``var/outbox/`` when no Twilio credentials are set."""

from __future__ import annotations

from shared.channels import Channel
from shared.config import Settings
from shared.payloads import SmsPayload
from shared.provider_settings import HttpSmsGateway
from workers.delivery.failover import Failover, Named
from workers.delivery.pipeline import Pipeline
from workers.providers.base import Provider


def build_provider(settings: Settings) -> Provider[SmsPayload]:
    if not (settings.twilio_account_sid and settings.twilio_auth_token):
        from workers.providers.outbox import OutboxSmsProvider

        return OutboxSmsProvider(settings)
    from workers.providers.http_sms import HttpSmsProvider
    from workers.providers.twilio import TwilioProvider

    providers = settings.sms_providers
    first = Named(providers[0].name, TwilioProvider(settings))  # names what TWILIO_* lacks, if anything
    rest = [
        Named(
            p.name,
            HttpSmsProvider(settings, p) if isinstance(p, HttpSmsGateway) else TwilioProvider(settings, p),
        )
        for p in providers[1:]
    ]
    return Failover(Channel.SMS, [first, *rest], settings)


def build_pipeline(settings: Settings) -> Pipeline:
    return Pipeline(Channel.SMS, build_provider(settings), settings)
