"""Slack, for the ``chat`` channel, with the official ``slack_sdk`` asyncio clients.

A message reaches Slack one of two ways, chosen by its payload:

* An incoming webhook (``webhook_url``): a JSON POST of ``text`` and ``blocks`` through
  :class:`~slack_sdk.webhook.async_client.AsyncWebhookClient`. The URL is both the
  credential and the customer's choice, so it is handled as the webhook provider handles its
  URLs: the host is resolved through :class:`~workers.providers.http.GuardedResolver` (SSRF and
  DNS rebinding), a literal address is checked before the request, redirects are refused rather
  than followed (a literal address in a ``Location`` would be connected to without the guard),
  proxies from the environment are ignored (a proxy connects where the guard cannot look), and
  the URL never reaches a log line, an error message (its host at most) or a result. Slack
  answers a webhook with a status and a one-word body: ``ok``, ``invalid_payload``,
  ``no_service`` …
* A channel or member id (``channel``): ``chat.postMessage`` with the bot token
  (SLACK_BOT_TOKEN) through :class:`~slack_sdk.web.async_client.AsyncWebClient`, pointed at
  SLACK_API_BASE. Slack answers ``{"ok": false, "error": "<name>"}``, raised by the SDK as
  :class:`~slack_sdk.errors.SlackApiError`; :func:`classify` maps the names onto our two
  delivery errors. Without a token the message is not at fault: it waits (a temporary error)
  for the configuration instead of failing, and the provider still builds, since webhook
  messages need no token.

The SDK's retry handlers are turned off. The pipeline retries through the broker with its own
backoff; a second layer inside one attempt would multiply the attempts Slack sees and, as the
SDK sleeps out a 429's Retry-After, outlive the attempt's deadline. One pooled aiohttp session
per event loop and kind (the Web API; the guarded webhooks) serves every message in flight,
and one deadline, CHAT_TIMEOUT, covers each attempt whatever the peer does.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient
from slack_sdk.webhook.webhook_response import WebhookResponse

from shared.config import Settings
from shared.errors import (
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    TargetGone,
    TemporaryDeliveryError,
)
from shared.messages import check_http_url
from shared.payloads import ChatPayload
from workers.providers import chat_errors
from workers.providers.base import Outgoing, SendResult
from workers.providers.http import check_literal, guarded_session, parse_retry_after

#: Connections the process may hold open at once, per session: far above the rate Slack lets
#: one app post at, so a message never waits for a connection.
MAX_CONNECTIONS = 256

#: The Web API's name for "too many requests" (with HTTP 429 and Retry-After).
RATE_LIMITED = "ratelimited"

#: Web API errors that refuse this message: the same post would be refused again.
PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "is_archived",
        "user_not_found",
        "not_in_channel",
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "too_many_attachments",
    }
)

#: Web API errors about our token or the app's setup: an operator fixes them, the message is
#: fine and waits for the fix instead of failing.
CREDENTIAL_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive", "missing_scope"}
)

#: Web API errors that are Slack's own trouble, gone on a later attempt.
TEMPORARY_ERRORS = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "team_added_to_org"}
)

#: Incoming-webhook statuses meaning the webhook, its workspace or its channel is gone
#: (404 ``no_service``/``no_team``/``channel_not_found``, 410 ``channel_is_archived``).
WEBHOOK_GONE_STATUSES = frozenset({404, 410})

#: Statuses that mean "not now" rather than "not this request", besides 5xx.
TEMPORARY_STATUSES = frozenset({408, 429})

#: The longest fallback text derived from blocks: it is what a notification or a screen
#: reader shows, so a glance, not the message.
FALLBACK_MAX_CHARS = 150

#: What an error name from Slack looks like; anything else (a proxy's HTML page) is not
#: echoed into our error codes.
_ERROR_NAME = re.compile(r"[a-z0-9_]{1,64}")

#: Block types whose text is controls (buttons, inputs), not what the message says.
_CONTROL_BLOCKS = frozenset({"actions", "input"})
#: Keys under which Block Kit nests controls and their metadata rather than content.
_CONTROL_KEYS = frozenset({"accessory", "confirm", "placeholder", "options", "option_groups"})

#: The SDK's webhook client writes the URL into its debug lines; it gets this logger, which
#: drops everything, so no logging configuration can bring the URL out.
_SILENT = logging.Logger("workers.providers.slack.webhooks", level=logging.CRITICAL)
_SILENT.disabled = True


class WebhookRedirected(aiohttp.ClientError):
    """The webhook answered with a redirect, which is not followed."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status} redirect refused")
        self.status = status


def fallback_text(blocks: Sequence[Any] | None, limit: int = FALLBACK_MAX_CHARS) -> str:
    """A short plain text for ``blocks``: their text fields in order, whitespace collapsed,
    cut at ``limit`` characters. Slack shows it where blocks cannot be rendered
    (notifications, screen readers) and asks for it with every post that has blocks."""
    parts: list[str] = []
    for block in blocks or ():
        if isinstance(block, Mapping) and block.get("type") not in _CONTROL_BLOCKS:
            _collect_text(block, parts, limit)
    text = " ".join(" ".join(parts).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _collect_text(node: Any, parts: list[str], limit: int) -> None:
    """Append every ``text`` string under ``node`` (text objects, rich text elements) to
    ``parts``, until there is more than ``limit`` characters of it."""
    if sum(len(part) for part in parts) > limit:
        return
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "text" and isinstance(value, str):
                parts.append(value)
            elif key not in _CONTROL_KEYS:
                _collect_text(value, parts, limit)
    elif isinstance(node, list):
        for item in node:
            _collect_text(item, parts, limit)


def _error_name(value: Any) -> str | None:
    """``value`` when it looks like one of Slack's error names."""
    if isinstance(value, str) and _ERROR_NAME.fullmatch(value.strip()):
        return value.strip()
    return None


def _header(headers: Any, name: str) -> str | None:
    """A header of a SlackResponse, whatever mapping the SDK kept it in."""
    if not isinstance(headers, Mapping):
        return None
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name.lower():
            return str(value)
    return None


def _detail(data: Mapping[str, Any]) -> str:
    """What Slack adds to some errors: the scopes a missing_scope needs, the reasons blocks
    were refused (``response_metadata.messages``)."""
    notes = []
    if isinstance(data.get("needed"), str):
        notes.append(f"needed {data['needed']}, provided {data.get('provided') or 'none'}")
    metadata = data.get("response_metadata")
    messages = metadata.get("messages") if isinstance(metadata, Mapping) else None
    if isinstance(messages, list):
        notes.extend(str(line) for line in messages[:3])
    return f" ({'; '.join(notes)[:300]})" if notes else ""


def _api_error(exc: SlackApiError) -> DeliveryError:
    """A Web API answer that was not ``ok``: by Slack's error name, else by HTTP status."""
    response = exc.response
    status = int(getattr(response, "status_code", 0) or 0)
    data = getattr(response, "data", None)
    data = data if isinstance(data, Mapping) else {}
    error = _error_name(data.get("error"))
    if error == RATE_LIMITED or status == 429:
        retry_after = parse_retry_after(_header(getattr(response, "headers", None), "Retry-After"))
        return TemporaryDeliveryError(
            f"Slack rate-limited chat.postMessage (HTTP {status})",
            code="slack_ratelimited",
            retry_after_ms=retry_after,
        )
    if error is None:
        # No error name: a proxy's page, an HTML 502, a truncated answer.
        message = f"Slack answered chat.postMessage with HTTP {status} and no error name"
        if 400 <= status < 500 and status not in TEMPORARY_STATUSES:
            return PermanentDeliveryError(message, code=f"slack_http_{status}")
        return TemporaryDeliveryError(message, code=f"slack_http_{status}" if status else "slack_error")
    message = f"Slack refused chat.postMessage: {error}{_detail(data)}"
    if error in CREDENTIAL_ERRORS or error in TEMPORARY_ERRORS or status >= 500:
        return TemporaryDeliveryError(message, code=f"slack_{error}")
    # PERMANENT_ERRORS, and the many other names Slack gives requests it will never take
    # (invalid_arguments, restricted_action …).
    return PermanentDeliveryError(message, code=f"slack_{error}")


def classify(exc: BaseException) -> DeliveryError:
    """Translate a Web API (bot token) failure into one of our two delivery errors."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, SlackApiError):
        return _api_error(exc)
    # A connect failure sent nothing. A timeout is different: Slack may have posted the
    # message before the deadline cut the answer off.
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TemporaryDeliveryError(f"Slack unreachable: {exc}", code="slack_connection")
    if isinstance(exc, TimeoutError):
        return TemporaryDeliveryError("Slack did not answer in time", code="slack_timeout")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return TemporaryDeliveryError(f"Slack request failed: {exc}", code="slack_connection")
    return TemporaryDeliveryError(
        f"Slack failed unexpectedly: {type(exc).__name__}: {exc}", code="slack_error"
    )


def classify_webhook(
    status: int, body: str, host: str, retry_after: str | None = None
) -> DeliveryError | None:
    """An incoming webhook's answer: None when the message was posted, else why not. Only
    Slack's error name is repeated (never the body as such): a page from elsewhere could
    echo the URL."""
    if 200 <= status < 300:
        return None
    error = _error_name(body)
    said = f"Slack webhook at {host} answered HTTP {status}: {error or 'no error name'}"
    code = f"slack_{error}" if error else f"slack_http_{status}"
    if status in WEBHOOK_GONE_STATUSES:
        return TargetGone(f"{said}; the webhook was removed", code="chat_webhook_gone")
    if status == 429:
        return TemporaryDeliveryError(
            said, code="slack_ratelimited", retry_after_ms=parse_retry_after(retry_after)
        )
    if 400 <= status < 500 and status not in TEMPORARY_STATUSES:
        # 400 invalid_payload/no_text/invalid_blocks, 403 action_prohibited/
        # posting_to_general_channel_denied: this message will never be taken.
        return PermanentDeliveryError(said, code=code)
    return TemporaryDeliveryError(said, code=code)


def webhook_transport_error(exc: BaseException, host: str) -> DeliveryError:
    """A webhook request that got no answer, named by the host alone."""
    if isinstance(exc, WebhookRedirected):
        return TemporaryDeliveryError(
            f"Slack webhook at {host} answered HTTP {exc.status}, a redirect, which is not followed",
            code=f"slack_http_{exc.status}",
        )
    return chat_errors.webhook_transport_error(exc, host, "Slack")


async def _refuse_redirect(
    _session: Any, _ctx: SimpleNamespace, params: aiohttp.TraceRequestRedirectParams
) -> None:
    """Stop aiohttp before it follows a redirect (the SDK asks it to follow them)."""
    raise WebhookRedirected(params.response.status)


@dataclass
class _LoopClients:
    """The clients of one event loop; aiohttp sessions cannot move between loops."""

    loop: asyncio.AbstractEventLoop
    api: aiohttp.ClientSession | None = None
    web: AsyncWebClient | None = None
    hooks: aiohttp.ClientSession | None = None


class SlackProvider:
    """Post Slack messages through an incoming webhook or, with the bot token, to a channel
    or member id."""

    def __init__(self, settings: Settings) -> None:
        self._token = settings.chat.slack_bot_token
        self._api_base = settings.chat.slack_api_base
        self._timeout_s = settings.chat.timeout_ms / 1000
        self._policy = settings.address_policy
        self._clients: _LoopClients | None = None

    async def send(self, message: Outgoing[ChatPayload]) -> SendResult:
        payload = message.payload
        blocks = payload.blocks or None
        # Slack wants a text beside blocks: it is the notification and the accessible version.
        text = payload.text or fallback_text(blocks)
        if not text and not blocks:
            raise PermanentDeliveryError("Slack message has neither text nor blocks", code="slack_no_text")
        if payload.webhook_url:
            return await self._post_webhook(payload.webhook_url, text, blocks)
        if payload.channel:
            return await self._post_message(payload.channel, text, blocks)
        raise PermanentDeliveryError(
            "Slack message has neither a channel nor a webhook URL", code="chat_invalid"
        )

    async def _post_message(self, channel: str, text: str, blocks: list[Any] | None) -> SendResult:
        """``chat.postMessage`` with the bot token; the id is the channel and message ts."""
        try:
            client = self._web()
        except ConfigError as exc:
            raise TemporaryDeliveryError(str(exc), code="slack_not_configured") from exc
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await client.chat_postMessage(channel=channel, text=text or None, blocks=blocks)
        except Exception as exc:
            raise classify(exc) from exc
        # A member id is answered with the direct-message channel Slack opened for it.
        posted_in = response.get("channel") or channel
        ts = response.get("ts")
        return SendResult(provider_message_id=f"{posted_in}:{ts}" if ts else None, delivered=True)

    async def _post_webhook(self, url: str, text: str, blocks: list[Any] | None) -> SendResult:
        """One POST to an incoming webhook."""
        try:
            check_http_url(url)
        except ValueError as exc:
            # check_http_url says what is wrong without repeating the URL.
            raise PermanentDeliveryError(
                f"Slack webhook URL refused: {exc}", code="chat_invalid_url"
            ) from None
        host = urlsplit(url).hostname or "?"
        try:
            answer = await self._webhook_answer(url, text, blocks)
        except Exception as exc:
            failure = webhook_transport_error(exc, host)
        else:
            retry_after = _header(answer.headers, "Retry-After")
            refused = classify_webhook(answer.status_code, answer.body, host, retry_after)
            if refused is None:
                return SendResult(provider_message_id=str(answer.status_code), delivered=True)
            failure = refused
        # Raised here, outside the handler, so that the transport error (whose text may hold
        # the URL) is neither its cause nor its context.
        raise failure

    async def _webhook_answer(self, url: str, text: str, blocks: list[Any] | None) -> WebhookResponse:
        check_literal(url, self._policy)
        client = AsyncWebhookClient(
            url,
            timeout=self._sdk_timeout,
            session=self._hooks(),
            logger=_SILENT,
            retry_handlers=[],
        )
        # The SDK picks HTTPS_PROXY & co. up from the environment; a proxy would connect to the
        # webhook's host on our behalf, out of the address guard's sight.
        client.proxy = None
        async with asyncio.timeout(self._timeout_s):
            return await client.send(text=text or None, blocks=blocks)

    @property
    def _sdk_timeout(self) -> int:
        """The SDK's own timeout (whole seconds); the attempt's deadline is the real one."""
        return max(1, math.ceil(self._timeout_s))

    def _loop_clients(self) -> _LoopClients:
        loop = asyncio.get_running_loop()
        if self._clients is None or self._clients.loop is not loop:
            self._clients = _LoopClients(loop)
        return self._clients

    def _web(self) -> AsyncWebClient:
        """The running loop's Web API client, made at its first message."""
        if not self._token:
            raise ConfigError(
                "SLACK_BOT_TOKEN must be set to post to Slack channels with chat.postMessage "
                "(a bot token with the chat:write scope)"
            )
        clients = self._loop_clients()
        if clients.web is None:
            clients.api = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
                timeout=aiohttp.ClientTimeout(total=self._timeout_s),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            clients.web = AsyncWebClient(
                token=self._token,
                base_url=self._api_base,
                timeout=self._sdk_timeout,
                session=clients.api,
                retry_handlers=[],
            )
        return clients.web

    def _hooks(self) -> aiohttp.ClientSession:
        """The running loop's session for webhooks: guarded addresses, no redirects, no
        cookies carried from one webhook to another."""
        clients = self._loop_clients()
        if clients.hooks is None:
            refuse_redirects = aiohttp.TraceConfig()
            refuse_redirects.on_request_redirect.append(_refuse_redirect)
            clients.hooks = guarded_session(
                self._policy,
                timeout_s=self._timeout_s,
                limit=MAX_CONNECTIONS,
                auto_decompress=True,
                trace_configs=[refuse_redirects],
            )
        return clients.hooks

    async def close(self) -> None:
        """Close the loop's sessions (their pooled sockets)."""
        clients, self._clients = self._clients, None
        if clients is None or clients.loop is not asyncio.get_running_loop():
            return
        for session in (clients.api, clients.hooks):
            if session is not None:
                await session.close()
