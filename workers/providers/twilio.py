"""SMS through Twilio's Messages API, with the official ``twilio`` SDK's asyncio client.

One client (an aiohttp session the SDK pools connections in) per event loop serves every
message the process has in flight. Each attempt has one deadline, SMS_TIMEOUT, around the
whole request (the SDK's default is none, and a hung socket would hold the message forever),
and the client is pointed at ``TWILIO_API_BASE``, which tests and staging set to a local
server.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from shared.config import Settings
from shared.errors import ConfigError, DeliveryError, PermanentDeliveryError, TemporaryDeliveryError
from shared.messages import SMS_BODY_MAX_CHARS as MESSAGES_SMS_BODY_MAX_CHARS
from shared.payloads import SmsPayload
from shared.provider_settings import TwilioAccount
from workers.providers.base import Outgoing, SendResult

#: Twilio refuses bodies longer than this (1,600 characters, up to 10 segments); the same
#: limit the request schema enforces at the door.
SMS_BODY_MAX_CHARS = MESSAGES_SMS_BODY_MAX_CHARS

#: Twilio's "too many requests" error code (it may come with HTTP 429 or another status).
TWILIO_RATE_LIMITED = 20429

#: HTTP statuses that say "not now" rather than "not this request".
TEMPORARY_STATUSES = frozenset({408, 429})

#: 401 means our credentials are wrong: the message is fine and should wait for a fix
#: instead of being failed for good.
CREDENTIAL_STATUSES = frozenset({401})


def classify(exc: BaseException) -> DeliveryError:
    """Translate an SDK or transport failure into one of our two delivery errors."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, TwilioRestException | TwilioServiceException):
        status = int(exc.status or 0)
        code = int(exc.code) if exc.code is not None else None
        if isinstance(exc, TwilioRestException):
            text = str(exc.msg)  # not str(exc): that adds ANSI colours when stderr is a TTY
        else:
            text = exc.title + (f" - {exc.detail}" if exc.detail else "")
        reason = f"twilio_{code}" if code is not None and code != status else f"twilio_{status}"
        message = f"Twilio HTTP {status}" + (f" error {code}" if code is not None else "") + f": {text}"
        if (
            status >= 500
            or status in TEMPORARY_STATUSES
            or status in CREDENTIAL_STATUSES
            or code == TWILIO_RATE_LIMITED
        ):
            return TemporaryDeliveryError(message, code=reason)
        return PermanentDeliveryError(message, code=reason)
    # A connect failure sent nothing. A timeout is different: Twilio may have created the
    # message before the deadline cut the answer off.
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TemporaryDeliveryError(f"Twilio unreachable: {exc}", code="twilio_connection")
    if isinstance(exc, asyncio.TimeoutError):
        return TemporaryDeliveryError("Twilio did not answer in time", code="twilio_timeout")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return TemporaryDeliveryError(f"Twilio request failed: {exc}", code="twilio_connection")
    if isinstance(exc, TwilioException | ValueError):
        # Unparseable answers (a proxy's HTML page, truncated JSON) and other SDK surprises.
        return TemporaryDeliveryError(f"Twilio answered unexpectedly: {exc}", code="twilio_error")
    return TemporaryDeliveryError(
        f"Twilio failed unexpectedly: {type(exc).__name__}: {exc}", code="twilio_error"
    )


class TwilioProvider:
    """Send SMS through the Twilio REST API from one account (``TWILIO_*``'s unless given
    another) and its phone number."""

    def __init__(self, settings: Settings, account: TwilioAccount | None = None) -> None:
        if account is None:
            missing = [
                name
                for name, value in (
                    ("TWILIO_ACCOUNT_SID", settings.twilio_account_sid),
                    ("TWILIO_AUTH_TOKEN", settings.twilio_auth_token),
                    ("TWILIO_PHONE_NUMBER", settings.twilio_phone_number),
                )
                if not value
            ]
            if missing:
                raise ConfigError(f"{', '.join(missing)} must be set to send SMS through Twilio")
            account = settings.twilio_accounts[0]
        self._account_sid = account.account_sid
        self._auth_token = account.auth_token
        self._from = account.phone_number
        self._api_base = account.api_base
        #: Where Twilio reports what became of each message (producer/gateway/receipts.py).
        self._callbacks = f"{settings.public_base_url}/receipts/twilio/" if settings.public_base_url else None
        self._timeout_s = settings.sms_timeout_ms / 1000
        self._client_of: tuple[asyncio.AbstractEventLoop, Client, AsyncTwilioHttpClient] | None = None

    def _client(self) -> Client:
        """The running loop's client, made at its first message."""
        loop = asyncio.get_running_loop()
        if self._client_of is None or self._client_of[0] is not loop:
            http = AsyncTwilioHttpClient()
            client = Client(
                username=self._account_sid,
                password=self._auth_token,
                account_sid=self._account_sid,
                http_client=http,
                # The SDK falls back to os.environ when this mapping is empty, and would then
                # pick up TWILIO_EDGE / TWILIO_REGION, which rewrite the host we point it at.
                environment={"TWILIO_ACCOUNT_SID": self._account_sid},
            )
            # Every API domain takes its base URL from here (the Messages API lives on "api").
            client.api.base_url = self._api_base
            self._client_of = (loop, client, http)
        return self._client_of[1]

    async def send(self, message: Outgoing[SmsPayload]) -> SendResult:
        to, body = message.payload.to, message.payload.message
        if not to:
            raise PermanentDeliveryError("SMS payload has no recipient", code="sms_invalid")
        if not body:
            raise PermanentDeliveryError("SMS payload has no message", code="sms_invalid")
        if len(body) > SMS_BODY_MAX_CHARS:
            raise PermanentDeliveryError(
                f"SMS body has {len(body)} characters, Twilio takes at most {SMS_BODY_MAX_CHARS}",
                code="sms_too_long",
            )
        extra = {"status_callback": self._callbacks + message.id} if self._callbacks else {}
        try:
            async with asyncio.timeout(self._timeout_s):
                created: Any = await self._client().messages.create_async(
                    to=to, from_=self._from, body=body, **extra
                )
        except Exception as exc:
            raise classify(exc) from exc
        sid = getattr(created, "sid", None)
        return SendResult(provider_message_id=str(sid) if sid else None, delivered=False)

    async def close(self) -> None:
        """Close the loop's HTTP session (its pooled sockets)."""
        held, self._client_of = self._client_of, None
        if held is not None and held[0] is asyncio.get_running_loop():
            await held[2].close()
