"""Webhooks: a signed JSON POST to a URL, with httpx.

One ``httpx.Client`` (thread-safe, pooled) serves every worker thread of the process. Each
request is signed with Standard Webhooks headers whose ``webhook-id`` is our message id, the
same on every retry, so receivers can drop duplicates. Redirects are not followed: a signed
request must not be replayed to a host the caller did not name. Every connection goes
through :class:`shared.netguard.GuardedBackend`, which checks the address actually
connected to (SSRF and DNS rebinding).

The provider is handed a :class:`WebhookCall`: the URL, body, custom headers and signing
secrets to use now (the webhook pipeline resolves a configured endpoint to these; an
ad-hoc message is signed with WEBHOOK_SECRET). Every attempt yields an
:class:`~workers.providers.base.Exchange` (request and response with secrets redacted, a
capped excerpt of the answer, timings), on the :class:`SendResult` of a success or the
:class:`FailedDispatch` of a failure, so the pipeline can keep one delivery log row per
attempt.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from shared import netguard
from shared.config import Settings
from shared.errors import ConfigError, DeliveryError, PermanentDeliveryError, TemporaryDeliveryError
from shared.messages import check_http_url
from shared.webhooks.headers import HEADER_NAME, RESERVED_HEADERS
from shared.webhooks.signing import SIGNATURE_HEADER, signed_headers
from workers.providers.base import Exchange, FailedDispatch, Outgoing, SendResult

#: We read at most this much of a receiver's answer; the rest is dropped with the connection.
RESPONSE_BODY_MAX_BYTES = 64 * 1024

#: Connections the shared client may hold open at once (all hosts together) and keep idle.
MAX_CONNECTIONS = 100
MAX_KEEPALIVE_CONNECTIONS = 20

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


def redact_headers(headers: httpx.Headers) -> dict[str, str]:
    """The headers as they may appear in logs and the database."""
    shown: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        sensitive = lowered in SENSITIVE_HEADERS or any(part in lowered for part in SENSITIVE_HEADER_PARTS)
        shown[lowered] = REDACTED if sensitive else value
    return shown


def _transport_error(exc: httpx.HTTPError | httpx.InvalidURL) -> DeliveryError:
    """A request that got no (complete) answer: timeouts, refused or reset connections, DNS."""
    if isinstance(exc, httpx.TimeoutException):
        return TemporaryDeliveryError(f"webhook timed out: {type(exc).__name__}", code="http_timeout")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return PermanentDeliveryError(f"webhook URL refused: {exc}", code="http_invalid_url")
    return TemporaryDeliveryError(f"webhook connection failed: {exc}", code="http_connection")


def _read_capped(response: httpx.Response, deadline: float) -> tuple[bytes, bool]:
    """Up to RESPONSE_BODY_MAX_BYTES of the body, and whether there was more (or the read
    broke off). The status is already known, so a body that fails to arrive is not a failure.
    ``deadline`` (monotonic) stops a receiver that drips its body slower than the read timeout."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > RESPONSE_BODY_MAX_BYTES or time.monotonic() > deadline:
                return b"".join(chunks)[:RESPONSE_BODY_MAX_BYTES], True
    except httpx.HTTPError:
        return b"".join(chunks)[:RESPONSE_BODY_MAX_BYTES], True
    return b"".join(chunks), False


def guarded_transport(policy: netguard.AddressPolicy) -> httpx.HTTPTransport:
    """httpx's transport with every TCP connect going through the address guard."""
    transport = httpx.HTTPTransport(
        limits=httpx.Limits(
            max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS
        ),
        trust_env=False,
    )
    # httpx does not take a network backend as an argument; its pool (an httpcore
    # ConnectionPool) does, and reads it on every new connection.
    transport._pool._network_backend = netguard.GuardedBackend(policy)
    return transport


class _Timings:
    """Phases of one request from httpx's ``trace`` extension, in ms since the start."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._marks: dict[str, float] = {}
        self.dns_ms: float | None = None

    def lookup(self, elapsed_ms: float) -> None:
        self.dns_ms = round(elapsed_ms, 2)

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        self._marks.setdefault(event, time.monotonic())

    def phases(self) -> dict[str, float]:
        def span(begin: str, end: str) -> float | None:
            if begin in self._marks and end in self._marks:
                return round((self._marks[end] - self._marks[begin]) * 1000, 2)
            return None

        first_byte = next(
            (
                self._marks[e]
                for e in (
                    "http11.receive_response_headers.complete",
                    "http2.receive_response_headers.complete",
                )
                if e in self._marks
            ),
            None,
        )
        found = {
            "dns": self.dns_ms,
            # When the address guard resolves (private networks refused), the connect span
            # includes its lookup, which is also given alone as ``dns``.
            "connect": span("connection.connect_tcp.started", "connection.connect_tcp.complete"),
            "tls": span("connection.start_tls.started", "connection.start_tls.complete"),
            "first_byte": None if first_byte is None else round((first_byte - self.started) * 1000, 2),
        }
        return {name: value for name, value in found.items() if value is not None}


@dataclass(frozen=True, slots=True)
class WebhookCall:
    """What to post: the URL, the JSON body, the receiver's own headers and the secrets that
    sign the request (several during a secret rotation; None signs with WEBHOOK_SECRET)."""

    url: str
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] | None = None


class WebhookProvider:
    """POST signed webhooks; thread-safe, one pooled client per process."""

    def __init__(self, settings: Settings) -> None:
        self._secrets = (settings.webhook_secret,)
        try:
            signed_headers("probe", "", self._secrets)
        except ValueError as exc:
            raise ConfigError("WEBHOOK_SECRET must be a whsec_<base64> secret") from exc
        self._timeout_s = settings.webhook_timeout_ms / 1000
        self._client = httpx.Client(
            timeout=httpx.Timeout(settings.webhook_timeout_ms / 1000),
            transport=guarded_transport(settings.address_policy),
            follow_redirects=False,
            # Proxies for webhooks are infrastructure, not something a worker's shell may inject.
            trust_env=False,
        )

    def _request(self, message: Outgoing[WebhookCall]) -> tuple[str, bytes, httpx.Headers]:
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
        headers = httpx.Headers()
        for name, value in call.headers.items():
            if not (isinstance(name, str) and HEADER_NAME.fullmatch(name)):
                raise PermanentDeliveryError(f"invalid header name {name!r}", code="http_invalid_header")
            if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
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

    def send(self, message: Outgoing[WebhookCall]) -> SendResult:
        outcome = self.post(message)
        if isinstance(outcome, FailedDispatch):
            raise outcome.error
        return outcome

    def post(self, message: Outgoing[WebhookCall]) -> SendResult | FailedDispatch:
        """One attempt; its outcome either way, with what went over the wire."""
        try:
            url, body, headers = self._request(message)
        except DeliveryError as exc:
            return FailedDispatch(exc)
        # The URL goes to the delivery log row only, never to the process logs: it may carry a
        # token in its path or query.
        sent = Exchange(url=url, request_headers=redact_headers(headers), request_body=body.decode())
        timings = _Timings()
        started = timings.started

        def elapsed_ms() -> int:
            return int((time.monotonic() - started) * 1000)

        observing = netguard.lookup_observer.set(timings.lookup)
        try:
            with self._client.stream(
                "POST", url, content=body, headers=headers, extensions={"trace": timings}
            ) as response:
                excerpt, truncated = _read_capped(response, started + self._timeout_s)
        except netguard.AddressRefused as exc:
            refused = PermanentDeliveryError(f"webhook address refused: {exc}", code="http_address_refused")
            return FailedDispatch(refused, replace(sent, duration_ms=elapsed_ms()))
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            record = replace(sent, duration_ms=elapsed_ms(), timings=timings.phases())
            return FailedDispatch(_transport_error(exc), record)
        finally:
            netguard.lookup_observer.reset(observing)

        status = response.status_code
        record = replace(
            sent,
            status=status,
            response_headers=redact_headers(response.headers),
            duration_ms=elapsed_ms(),
            timings=timings.phases(),
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
        retry_after_ms = parse_retry_after(response.headers.get("retry-after"))
        error = TemporaryDeliveryError(summary, code=reason, retry_after_ms=retry_after_ms)
        return FailedDispatch(error, record)

    def close(self) -> None:
        self._client.close()
