"""How a chat webhook request that got no answer is reported, for Slack and Teams alike.

Webhook URLs are credentials, and aiohttp writes the request URL into some of its errors (a
response it could not parse, an invalid URL): the errors name the host and what went wrong,
never the exception's own text.
"""

from __future__ import annotations

import aiohttp

from shared import netguard
from shared.errors import DeliveryError, PermanentDeliveryError, TemporaryDeliveryError


def transport_reason(exc: BaseException) -> str:
    """What a transport failure was, without its text."""
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and os_error.strerror:
        return os_error.strerror
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def webhook_transport_error(exc: BaseException, host: str, tool: str) -> DeliveryError:
    """A webhook request of ``tool`` (Slack, Teams) that got no (complete) answer; its codes
    start with the tool's name in lower case."""
    prefix = tool.lower()
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, netguard.AddressRefused):
        # Its text names the host and the address, which is what an operator needs.
        return PermanentDeliveryError(f"{tool} webhook address refused: {exc}", code="chat_address_refused")
    if isinstance(exc, TimeoutError):
        return TemporaryDeliveryError(
            f"{tool} webhook at {host} did not answer in time", code=f"{prefix}_timeout"
        )
    if isinstance(exc, aiohttp.InvalidURL):
        return PermanentDeliveryError(f"{tool} webhook URL for {host} is invalid", code="chat_invalid_url")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return TemporaryDeliveryError(
            f"{tool} webhook at {host} unreachable: {transport_reason(exc)}", code=f"{prefix}_connection"
        )
    return TemporaryDeliveryError(
        f"{tool} webhook at {host} failed unexpectedly: {type(exc).__name__}", code=f"{prefix}_error"
    )
