"""Webhooks: a signed JSON POST to a URL, with aiohttp.

One ``aiohttp.ClientSession`` on the worker process's event loop serves every message in
flight: hundreds of requests can be on their way from one process over pooled keep-alive
connections (a slow receiver costs waiting time, not threads or CPU). Each request is signed
with Standard Webhooks headers whose ``webhook-id`` is our message id, the same on every
retry, so receivers can drop duplicates. Redirects are not followed: a signed request must
not be replayed to a host the caller did not name. Every name is resolved through
:class:`GuardedResolver`, which checks each address (SSRF and DNS rebinding) before aiohttp
connects to it; a literal address in the URL is checked before the request. No cookies are
kept between requests.

One deadline (WEBHOOK_TIMEOUT) covers the whole attempt: connect, TLS, sending, the answer's
headers and as much of its body as is read, whatever the receiver does.

The provider is handed a :class:`WebhookCall`: the URL, body, custom headers and signing
secrets to use now (the webhook pipeline resolves a configured endpoint to these; an
ad-hoc message is signed with WEBHOOK_SECRET). Every attempt yields an
:class:`~workers.providers.base.Exchange` (request and response with secrets redacted, a
capped excerpt of the answer, timings), on the :class:`SendResult` of a success or the
:class:`FailedDispatch` of a failure, so the pipeline can keep one delivery log row per
attempt.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from shared import netguard
from shared.config import Settings
from shared.errors import ConfigError, DeliveryError, PermanentDeliveryError, TemporaryDeliveryError
from shared.messages import check_http_url, fits_a_header
from shared.webhooks.headers import HEADER_NAME, RESERVED_HEADERS
from shared.webhooks.signing import SIGNATURE_HEADER, signed_headers
from workers.providers.base import Exchange, FailedDispatch, Outgoing, SendResult

#: We read at most this much of a receiver's answer; the rest is dropped with the connection.
RESPONSE_BODY_MAX_BYTES = 64 * 1024

#: Connections the process may hold open at once, all receivers together: above the most
#: requests a pool's threads can have in flight, so a request never waits for a connection.
MAX_CONNECTIONS = 1024


#: Longest Retry-After we honour; a receiver asking for more is retried after a day anyway.
RETRY_AFTER_MAX_MS = 24 * 60 * 60 * 1000

#: Statuses that mean "try again later" besides 5xx.
TEMPORARY_STATUSES = frozenset({408, 425, 429})

USER_AGENT = "KAI-Messaging-Webhooks/1.0"

#: Request headers never written to logs as they are (names matched case-insensitively; any
#: name containing one of SENSITIVE_HEADER_PARTS is redacted too).
SENSITIVE_HEADERS = frozenset(
    {SIGNATURE_HEADER, "authorization", "proxy-authorization", "cookie", "set-cookie"}
)
SENSITIVE_HEADER_PARTS = ("secret", "token", "password", "api-key", "apikey", "signature")
REDACTED = "[redacted]"


def parse_retry_after(value: str | None, now: datetime | None = None) -> int | None:
    """Milliseconds asked for by a ``Retry-After`` header (delay-seconds or an HTTP-date),
    clamped to ``[0, RETRY_AFTER_MAX_MS]``; None when absent or unreadable."""
    if value is None:
        return None
    raw = value.strip()
    if not raw:
        return None
    if raw.isascii() and raw.isdigit():
        millis = int(raw) * 1000
    else:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)  # HTTP-dates are GMT
        millis = int((when - (now or datetime.now(UTC))).total_seconds() * 1000)
    return max(0, min(millis, RETRY_AFTER_MAX_MS))


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers as they may appear in logs and the database."""
    shown: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        sensitive = lowered in SENSITIVE_HEADERS or any(part in lowered for part in SENSITIVE_HEADER_PARTS)
        shown[lowered] = REDACTED if sensitive else value
    return shown


def _transport_error(exc: BaseException) -> DeliveryError:
    """A request that got no (complete) answer: timeouts, refused or reset connections, DNS."""
    if isinstance(exc, asyncio.TimeoutError):
        return TemporaryDeliveryError("webhook timed out", code="http_timeout")
    if isinstance(exc, aiohttp.InvalidURL):
        return PermanentDeliveryError(f"webhook URL refused: {exc}", code="http_invalid_url")
    return TemporaryDeliveryError(
        f"webhook connection failed: {exc or type(exc).__name__}", code="http_connection"
    )


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver with the address policy between resolving and connecting: every
    address a name resolves to must be allowed (:func:`shared.netguard.resolve_checked`), and
    aiohttp connects only to the addresses returned here."""

    def __init__(self, policy: netguard.AddressPolicy) -> None:
        self.policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        if self.policy.allow_private:
            addresses = await loop.run_in_executor(None, netguard.resolve, host, port)
        else:
            addresses = await loop.run_in_executor(None, netguard.resolve_checked, self.policy, host, port)
        return [
            {
                "hostname": host,
                "host": str(address),
                "port": port,
                "family": socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        pass


def check_literal(url: str, policy: netguard.AddressPolicy, what: str = "webhooks") -> None:
    """aiohttp connects to a literal address without asking the resolver: check it here.
    ``what`` names the URLs in the refusal (webhooks, push endpoints)."""
    host = urlsplit(url).hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return
    why = policy.reason(address)
    if why is not None:
        raise netguard.AddressRefused(
            f"{address} is {why}; {what} may only reach public addresses "
            "(see WEBHOOK_ALLOW_PRIVATE_NETWORKS and WEBHOOK_ALLOWED_SUBNETS)"
        )


def guarded_session(
    policy: netguard.AddressPolicy,
    *,
    timeout_s: float,
    limit: int = MAX_CONNECTIONS,
    auto_decompress: bool = False,
    trace_configs: list[aiohttp.TraceConfig] | None = None,
) -> aiohttp.ClientSession:
    """A pooled session for URLs someone else chose (webhooks, push endpoints, chat webhooks):
    every address it connects to passes ``policy`` (:class:`GuardedResolver`; literal
    addresses go through :func:`check_literal`), one deadline covers each whole request
    whatever the peer does, and no cookie one host sets travels to another."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, limit_per_host=0, resolver=GuardedResolver(policy)),
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=auto_decompress,
        trace_configs=trace_configs,
    )


class _Timings:
    """Phases of one attempt in ms: dns and connect (on a new connection only; a reused one
    has neither) and first_byte (the answer's status line and headers)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.found: dict[str, float] = {}

    def mark(self, name: str, since: float | None = None) -> None:
        self.found[name] = round((time.monotonic() - (since or self.started)) * 1000, 2)


def _trace_config() -> aiohttp.TraceConfig:
    config = aiohttp.TraceConfig()

    async def dns_start(_s: Any, ctx: SimpleNamespace, _p: Any) -> None:
        ctx.trace_request_ctx.dns_started = time.monotonic()

    async def dns_end(_s: Any, ctx: SimpleNamespace, _p: Any) -> None:
        timings: _Timings = ctx.trace_request_ctx
        timings.mark("dns", getattr(timings, "dns_started", None))

    async def connect_start(_s: Any, ctx: SimpleNamespace, _p: Any) -> None:
        ctx.trace_request_ctx.connect_started = time.monotonic()

    async def connect_end(_s: Any, ctx: SimpleNamespace, _p: Any) -> None:
        timings: _Timings = ctx.trace_request_ctx
        # With the address guard, the connect span includes its lookup (also given as dns).
        timings.mark("connect", getattr(timings, "connect_started", None))

    config.on_dns_resolvehost_start.append(dns_start)
    config.on_dns_resolvehost_end.append(dns_end)
    config.on_connection_create_start.append(connect_start)
    config.on_connection_create_end.append(connect_end)
    return config


@dataclass(frozen=True, slots=True)
class WebhookCall:
    """What to post: the URL, the JSON body, the receiver's own headers and the secrets that
    sign the request (several during a secret rotation; None signs with WEBHOOK_SECRET)."""

    url: str
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] | None = None


class WebhookProvider:
    """POST signed webhooks; one pooled client per process, on its event loop."""

    def __init__(self, settings: Settings) -> None:
        self._secrets = (settings.webhook_secret,)
        try:
            signed_headers("probe", "", self._secrets)
        except ValueError as exc:
            raise ConfigError("WEBHOOK_SECRET must be a whsec_<base64> secret") from exc
        self._timeout_s = settings.webhook_timeout_ms / 1000
        self._policy = settings.address_policy
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    def _request(self, message: Outgoing[WebhookCall]) -> tuple[str, bytes, dict[str, str]]:
        call = message.payload
        url = call.url
        try:
            # Only the form of the URL here: where it may lead is checked by the address guard
            # on the address actually connected to.
            check_http_url(url)
        except ValueError as exc:
            raise PermanentDeliveryError(f"webhook URL refused: {exc}", code="http_invalid_url") from exc
        try:
            body = json.dumps(call.body, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise PermanentDeliveryError(
                f"webhook payload is not JSON: {exc}", code="http_invalid_body"
            ) from exc
        headers: dict[str, str] = {}
        for name, value in call.headers.items():
            if not (isinstance(name, str) and HEADER_NAME.fullmatch(name)):
                raise PermanentDeliveryError(f"invalid header name {name!r}", code="http_invalid_header")
            if not isinstance(value, str) or not fits_a_header(value):
                raise PermanentDeliveryError(f"invalid value for header {name}", code="http_invalid_header")
            if name.lower() not in RESERVED_HEADERS:
                headers[name] = value
        headers["content-type"] = "application/json"
        headers["user-agent"] = USER_AGENT
        # An uncompressed answer keeps the 64 KiB read cap a real memory cap (a small gzip
        # chunk can inflate to megabytes).
        headers["accept-encoding"] = "identity"
        headers.update(signed_headers(message.id, body, call.secrets or self._secrets))
        return url, body.encode(), headers

    async def send(self, message: Outgoing[WebhookCall]) -> SendResult:
        outcome = await self.post(message)
        if isinstance(outcome, FailedDispatch):
            raise outcome.error
        return outcome

    async def post(self, message: Outgoing[WebhookCall]) -> SendResult | FailedDispatch:
        """One attempt; its outcome either way, with what went over the wire."""
        try:
            url, body, headers = self._request(message)
        except DeliveryError as exc:
            return FailedDispatch(exc)
        return await self._post(url, body, headers)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> SendResult | FailedDispatch:
        # The URL goes to the delivery log row only, never to the process logs: it may carry a
        # token in its path or query.
        sent = Exchange(url=url, request_headers=redact_headers(headers), request_body=body.decode())
        timings = _Timings()
        # Enforced by the event loop, not by the library's per-operation timers: a peer that
        # keeps every single read short (one header byte a second) still meets this deadline.
        deadline = asyncio.get_running_loop().time() + self._timeout_s
        try:
            check_literal(url, self._policy)
            async with asyncio.timeout_at(deadline):
                response = await self._client().post(
                    url,
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                    trace_request_ctx=timings,
                )
            try:
                timings.mark("first_byte")
                excerpt, truncated = await _read_capped(response, deadline)
                status = response.status
                answer_headers = redact_headers(response.headers)
                retry_after = response.headers.get("retry-after")
            finally:
                response.release()
        except netguard.AddressRefused as exc:
            refused = PermanentDeliveryError(f"webhook address refused: {exc}", code="http_address_refused")
            return FailedDispatch(refused, replace(sent, duration_ms=_since(timings.started)))
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            record = replace(sent, duration_ms=_since(timings.started), timings=timings.found)
            return FailedDispatch(_transport_error(exc), record)
        record = replace(
            sent,
            status=status,
            response_headers=answer_headers,
            duration_ms=_since(timings.started),
            timings=timings.found,
            response_excerpt=excerpt.decode("utf-8", errors="replace"),
            response_truncated=truncated,
        )
        if 200 <= status < 300:
            return SendResult(provider_message_id=str(status), delivered=True, exchange=record)
        reason = f"http_{status}"
        summary = f"webhook answered HTTP {status}"
        if 400 <= status < 500 and status not in TEMPORARY_STATUSES:
            return FailedDispatch(PermanentDeliveryError(summary, code=reason), record)
        # 3xx (redirects are not followed), 408/425/429, 5xx and anything unexpected.
        error = TemporaryDeliveryError(summary, code=reason, retry_after_ms=parse_retry_after(retry_after))
        return FailedDispatch(error, record)

    def _client(self) -> aiohttp.ClientSession:
        """The pooled session of the running loop, made at first use."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session_loop is not loop:
            self._session_loop = loop
            self._session = guarded_session(
                self._policy, timeout_s=self._timeout_s, trace_configs=[_trace_config()]
            )
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and self._session_loop is asyncio.get_running_loop():
            await session.close()


def _since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


async def _read_capped(response: aiohttp.ClientResponse, deadline: float) -> tuple[bytes, bool]:
    """Up to RESPONSE_BODY_MAX_BYTES of the body, and whether there was more (or the read
    broke off). The status is already known, so a body that fails to arrive is not a failure;
    the attempt's deadline stops a receiver that drips it."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout_at(deadline):
            while size <= RESPONSE_BODY_MAX_BYTES:
                chunk = await response.content.read(RESPONSE_BODY_MAX_BYTES + 1 - size)
                if not chunk:
                    return b"".join(chunks), False
                chunks.append(chunk)
                size += len(chunk)
    except (TimeoutError, aiohttp.ClientError):
        pass
    response.close()  # the rest is not read: the connection cannot be reused
    return b"".join(chunks)[:RESPONSE_BODY_MAX_BYTES], True
