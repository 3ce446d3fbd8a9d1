"""ASGI entry point for uvicorn (``uvicorn --factory producer.gateway.asgi:build``)."""

from __future__ import annotations

from starlette.applications import Starlette

from producer.gateway.app import create_app
from shared.config import get_settings, log_webhook_network_policy, set_settings, startup_settings
from shared.logging import configure_logging, secret_values


def build() -> Starlette:
    settings = startup_settings(get_settings())
    set_settings(settings)
    configure_logging(settings.log_level, secret_values(settings))
    log_webhook_network_policy(settings)
    return create_app(settings)
