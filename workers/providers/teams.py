"""Microsoft Teams, for the ``chat`` channel: an Adaptive Card POSTed to a channel's webhook URL.

Teams takes messages from outside through a URL a channel's owner created: a Power Automate
Workflows URL (the "post to a channel when a webhook request is received" flow) or a legacy
Office 365 connector incoming webhook, being retired in its favour. Both take the same body,
a ``message`` activity with one Adaptive Card attachment, so one shape serves both: the
payload's own card, or a card of one wrapping TextBlock made from its text. A card given by
the caller is checked for the two fields every Adaptive Card needs before anything is sent;
the rest is Teams' to judge.

There is no SDK to use: Microsoft's Bot Framework SDK is for bots, and this protocol is one
POST, sent with aiohttp. The URL is both the credential and the customer's choice, so it is
handled as the webhook provider handles its URLs: the host is resolved through
:class:`~workers.providers.http.GuardedResolver` (SSRF and DNS rebinding), a literal address is
checked before the request, redirects are not followed, and the URL never reaches a log line,
an error message (its host at most) or a result. One pooled session per event loop serves
every message in flight, and one deadline, CHAT_TIMEOUT, covers each attempt: the request,
and the few bytes of the answer that are read.

The answers differ by kind. Workflows answer 202 Accepted: the flow posts the card a moment
later (accepted, not yet shown: ``delivered`` is False). Connectors answer 200 with the body
``1`` once the card is in the channel (``delivered``), but also 200 with an error text when
Teams behind them refused it ("Microsoft Teams endpoint returned HTTP error 429 …"): that is
not a success, and it is classified by the status it names.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from shared.config import Settings
from shared.errors import DeliveryError, PermanentDeliveryError, TargetGone, TemporaryDeliveryError
from shared.messages import check_http_url
from shared.payloads import ChatPayload
from workers.providers import chat_errors
from workers.providers.base import Outgoing, SendResult
from workers.providers.http import check_literal, guarded_session, parse_retry_after

#: The attachment content type of an Adaptive Card.
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
#: The version of the cards made from text: the newest every Teams client renders.
DEFAULT_CARD_VERSION = "1.4"

#: How much of an answer is read: enough for Teams' error texts, which are short.
ANSWER_MAX_BYTES = 4096
#: How much of an answer an error message repeats.
EXCERPT_MAX_CHARS = 200

#: Connections the process may hold open at once, all webhooks together.
MAX_CONNECTIONS = 256

#: Statuses meaning the webhook (or its flow, or its channel) was removed.
GONE_STATUSES = frozenset({404, 410})
#: Statuses that mean "not now" rather than "not this request", besides 5xx.
TEMPORARY_STATUSES = frozenset({408, 429})

#: The error text a connector puts in a 200 when Teams refused the card behind it.
ERROR_IN_ANSWER = re.compile(r"returned HTTP error (\d{3})", re.IGNORECASE)
#: Its other form, without a status to go by.
FAILURE_IN_ANSWER = re.compile(r"delivery failed", re.IGNORECASE)

#: Path segments and query values at least this long are taken for secrets when an answer is
#: scrubbed of the URL (Workflows signatures, connector GUIDs).
_SECRET_MIN_CHARS = 12

USER_AGENT = "KAI-Messaging-Chat/1.0"
HEADERS = {
    "content-type": "application/json",
    "user-agent": USER_AGENT,
    # An uncompressed answer keeps the read cap a real memory cap.
    "accept-encoding": "identity",
}


def default_card(text: str) -> dict[str, Any]:
    """An Adaptive Card showing ``text``, wrapped (a TextBlock cuts at one line otherwise)."""
    return {
        "$schema": CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": DEFAULT_CARD_VERSION,
        "body": [{"type": "TextBlock", "text": text, "wrap": True}],
    }


def check_card(card: Any) -> dict[str, Any]:
    """``card`` when it is an Adaptive Card by its two required fields; PermanentDeliveryError
    otherwise, before a request Teams would refuse (or, through a Workflow, accept and drop)."""
    if not isinstance(card, dict):
        raise PermanentDeliveryError("Teams card must be an object", code="teams_invalid_card")
    if card.get("type") != "AdaptiveCard":
        raise PermanentDeliveryError('Teams card must have "type": "AdaptiveCard"', code="teams_invalid_card")
    version = card.get("version")
    if not isinstance(version, str) or not version.strip():
        raise PermanentDeliveryError(
            'Teams card must have a "version" such as "1.4"', code="teams_invalid_card"
        )
    return card


def teams_message(payload: ChatPayload) -> dict[str, Any]:
    """The body both kinds of webhook take: a message with one Adaptive Card attachment."""
    if payload.card is not None:
        card = check_card(payload.card)
    elif payload.text:
        card = default_card(payload.text)
    else:
        raise PermanentDeliveryError("Teams message has neither a card nor text", code="teams_no_text")
    return {
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": None, "content": card}],
    }


def scrub(answer: str, url: str) -> str:
    """``answer`` on one line, cut short, with the URL and its secret-looking parts taken out:
    a generic error page may echo the path it was asked for."""
    parts = urlsplit(url)
    text = " ".join(answer.split())
    pieces = [parts.path + (f"?{parts.query}" if parts.query else ""), parts.query, parts.path]
    pieces += re.split(r"[/?&=]", f"{parts.path}?{parts.query}")
    for piece in sorted({url, *(p for p in pieces if len(p) >= _SECRET_MIN_CHARS)}, key=len, reverse=True):
        text = text.replace(piece, "…")
    return text[:EXCERPT_MAX_CHARS]


def _by_status(status: int, said: str, retry_after_ms: int | None) -> DeliveryError:
    """The error for a refusal with ``status`` (answered, or named inside a 200)."""
    if status in GONE_STATUSES:
        return TargetGone(f"{said}; the webhook was removed", code="chat_webhook_gone")
    if status == 413:
        return PermanentDeliveryError(f"{said}; the card is over Teams' 28 KB", code="chat_too_large")
    if status == 429:
        return TemporaryDeliveryError(said, code="teams_http_429", retry_after_ms=retry_after_ms)
    if 400 <= status < 500 and status not in TEMPORARY_STATUSES:
        return PermanentDeliveryError(said, code=f"teams_http_{status}")
    # 408, 5xx, redirects (not followed) and anything unexpected.
    return TemporaryDeliveryError(said, code=f"teams_http_{status}")


def classify(status: int, answer: str, url: str, retry_after: str | None = None) -> DeliveryError | None:
    """A webhook's answer: None when Teams took the card, else why not. ``url`` is only used
    to name its host and to keep it out of the message."""
    host = urlsplit(url).hostname or "?"
    excerpt = scrub(answer, url)
    if 200 <= status < 300:
        named = ERROR_IN_ANSWER.search(answer)
        if named is not None:
            said = f"Teams webhook at {host} answered {status} with an error: {excerpt}"
            return _by_status(int(named.group(1)), said, None)
        if FAILURE_IN_ANSWER.search(answer):
            return TemporaryDeliveryError(
                f"Teams webhook at {host} answered {status} with an error: {excerpt}", code="teams_error"
            )
        return None
    said = f"Teams webhook at {host} answered HTTP {status}" + (f": {excerpt}" if excerpt else "")
    return _by_status(status, said, parse_retry_after(retry_after))


def transport_error(exc: BaseException, host: str) -> DeliveryError:
    """A request that got no (complete) answer, named by the host alone."""
    return chat_errors.webhook_transport_error(exc, host, "Teams")


async def _read_answer(response: aiohttp.ClientResponse) -> bytes:
    """Up to ANSWER_MAX_BYTES of the body; the rest is dropped with the connection."""
    chunks: list[bytes] = []
    size = 0
    while size < ANSWER_MAX_BYTES:
        chunk = await response.content.read(ANSWER_MAX_BYTES - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class TeamsProvider:
    """POST Adaptive Cards to Teams webhook and Workflows URLs; one pooled session per loop."""

    def __init__(self, settings: Settings) -> None:
        self._timeout_s = settings.chat.timeout_ms / 1000
        self._policy = settings.address_policy
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    async def send(self, message: Outgoing[ChatPayload]) -> SendResult:
        payload = message.payload
        url = payload.webhook_url
        if not url:
            raise PermanentDeliveryError("Teams message has no webhook URL", code="chat_invalid")
        try:
            check_http_url(url)
        except ValueError as exc:
            # check_http_url says what is wrong without repeating the URL.
            raise PermanentDeliveryError(
                f"Teams webhook URL refused: {exc}", code="chat_invalid_url"
            ) from None
        try:
            body = json.dumps(teams_message(payload), separators=(",", ":"), ensure_ascii=False).encode()
        except (TypeError, ValueError) as exc:
            raise PermanentDeliveryError(f"Teams card is not JSON: {exc}", code="teams_invalid_card") from exc
        host = urlsplit(url).hostname or "?"
        try:
            status, answer, retry_after = await self._post(url, body)
        except Exception as exc:
            failure = transport_error(exc, host)
        else:
            refused = classify(status, answer, url, retry_after)
            if refused is None:
                # A connector's "1" says the card is in the channel; a Workflow's 202 only that
                # the flow will post it.
                return SendResult(provider_message_id=str(status), delivered=answer.strip() == "1")
            failure = refused
        # Raised here, outside the handler, so that the transport error (whose text may hold
        # the URL) is neither its cause nor its context.
        raise failure

    async def _post(self, url: str, body: bytes) -> tuple[int, str, str | None]:
        """The status, the start of the answer and its Retry-After."""
        check_literal(url, self._policy)
        async with (
            asyncio.timeout(self._timeout_s),
            self._client().post(url, data=body, headers=HEADERS, allow_redirects=False) as response,
        ):
            answer = await _read_answer(response)
            return (
                response.status,
                answer.decode("utf-8", errors="replace"),
                response.headers.get("Retry-After"),
            )

    def _client(self) -> aiohttp.ClientSession:
        """The pooled session of the running loop, made at first use."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session_loop is not loop:
            self._session_loop = loop
            self._session = guarded_session(self._policy, timeout_s=self._timeout_s, limit=MAX_CONNECTIONS)
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and self._session_loop is asyncio.get_running_loop():
            await session.close()
