"""SMS through any gateway with a JSON API (``"kind": "http"`` in ``SMS_FALLBACK_PROVIDERS``):
the second provider of a channel whose first is Twilio, when that second is not.

One request per message::

    POST <url>
    Authorization: Bearer <token>
    Idempotency-Key: <message id>
    Content-Type: application/json

    {"to": "+14155550100", "from": "<from>", "body": "…", "reference": "<message id>"}

A 2xx answer accepted it (its JSON ``id``, if any, is kept as the provider's message id).
429, 408, 425 and 5xx say "not now" (``Retry-After`` is honoured), and so do 401/403: the
credentials are wrong, not the message, which waits for them to be fixed; any other 4xx
refuses the message for good. The idempotency key lets a gateway that supports it drop the
copy a retry after a lost answer would send.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from shared.config import Settings
from shared.errors import DeliveryError, PermanentDeliveryError, TemporaryDeliveryError
from shared.payloads import SmsPayload
from shared.provider_settings import HttpSmsGateway
from workers.providers.base import Outgoing, SendResult
from workers.providers.http import parse_retry_after

#: Statuses that say "not now" rather than "not this request" (401/403: fix the credentials).
TEMPORARY_STATUSES = frozenset({401, 403, 408, 425, 429})

#: The most of an answer read: an id, or an error to quote.
MAX_ANSWER_BYTES = 64 * 1024


def classify(status: int, text: str, retry_after: str | None) -> DeliveryError:
    detail = f"SMS gateway HTTP {status}" + (f": {text[:200]}" if text else "")
    code = f"sms_http_{status}"
    if status >= 500 or status in TEMPORARY_STATUSES:
        return TemporaryDeliveryError(detail, code=code, retry_after_ms=parse_retry_after(retry_after))
    return PermanentDeliveryError(detail, code=code)


class HttpSmsProvider:
    def __init__(self, settings: Settings, gateway: HttpSmsGateway) -> None:
        self._gateway = gateway
        self._timeout_s = settings.sms_timeout_ms / 1000
        self._session_of: tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession] | None = None

    def _session(self) -> aiohttp.ClientSession:
        """The running loop's pooled session, made at its first message."""
        loop = asyncio.get_running_loop()
        if self._session_of is None or self._session_of[0] is not loop:
            self._session_of = (loop, aiohttp.ClientSession(raise_for_status=False))
        return self._session_of[1]

    async def send(self, message: Outgoing[SmsPayload]) -> SendResult:
        to, body = message.payload.to, message.payload.message
        if not to or not body:
            raise PermanentDeliveryError("SMS payload needs a recipient and a message", code="sms_invalid")
        document = {"to": to, "from": self._gateway.sender, "body": body, "reference": message.id}
        headers = {
            "Authorization": f"Bearer {self._gateway.token}",
            "Idempotency-Key": message.id,
            "Content-Type": "application/json",
        }
        try:
            async with (
                asyncio.timeout(self._timeout_s),
                self._session().post(self._gateway.url, data=json.dumps(document), headers=headers) as answer,
            ):
                text = (await answer.content.read(MAX_ANSWER_BYTES)).decode("utf-8", "replace")
                status, retry_after = answer.status, answer.headers.get("Retry-After")
        except TimeoutError:
            raise TemporaryDeliveryError(
                "SMS gateway did not answer in time", code="sms_http_timeout"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TemporaryDeliveryError(
                f"SMS gateway unreachable: {exc}", code="sms_http_connection"
            ) from exc
        if not 200 <= status < 300:
            raise classify(status, text, retry_after)
        return SendResult(provider_message_id=_answer_id(text), delivered=False)

    async def close(self) -> None:
        held, self._session_of = self._session_of, None
        if held is not None and held[0] is asyncio.get_running_loop():
            await held[1].close()


def _answer_id(text: str) -> str | None:
    try:
        document: Any = json.loads(text)
    except ValueError:
        return None
    found = document.get("id") if isinstance(document, dict) else None
    return str(found) if found not in (None, "") else None
