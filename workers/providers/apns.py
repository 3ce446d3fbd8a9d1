"""Push to iPhones, iPads and Macs through the Apple Push Notification service (APNs).

Protocol choices:

- **HTTP/2 only.** Apple's provider API speaks nothing else. One ``httpx.AsyncClient(http2=True)``
  per event loop keeps one connection to Apple open and multiplexes every notification in
  flight over it; the connection is kept between sends (:data:`IDLE_CONNECTION_S`) because
  Apple treats connecting and disconnecting over and over as a denial-of-service attempt.
- **Token-based authentication** (a ``.p8`` key, ``APNS_KEY_ID``, ``APNS_TEAM_ID``) rather
  than a client certificate: one key serves every app of the team and never expires. Each
  request carries ``authorization: bearer <JWT>``, an ES256 JWT with header
  ``{"alg": "ES256", "kid": APNS_KEY_ID}`` and claims ``{"iss": APNS_TEAM_ID, "iat": now}``.
  Apple refuses a token older than an hour (ExpiredProviderToken) and one replaced more often
  than every 20 minutes (TooManyProviderTokenUpdates), so one token is reused for
  :data:`PROVIDER_TOKEN_REUSE_S` (50 minutes); when Apple refuses it, the next attempt signs a
  new one, at most once per 20 minutes so that a wrong key does not turn into a storm of
  token updates.
- **TLS** is verified against ``APNS_CA_FILE`` when it is set (a relay's or the test peer's
  own CA) and the system's trust store otherwise; the settings, not the process environment,
  say where requests go (no proxy variables are read).
- **One deadline per attempt**, PUSH_TIMEOUT, around the whole request.

Each notification is ``POST /3/device/<token>`` with ``apns-topic`` (the device's app, else
``APNS_TOPIC``), ``apns-push-type: alert``, ``apns-priority`` (10 for ``high`` urgency, else
5: Apple throttles priority 10 sent for anything but an alert the user should see now),
``apns-expiration`` (from the TTL), ``apns-collapse-id`` (from the topic) and ``apns-id``
(our message id when it is a UUID, so Apple's logs and ours name the notification alike).
Apple answers 200 with ``apns-id``, or a status with ``{"reason": …}`` that :func:`answer_error`
maps: a token Apple no longer knows (410 Unregistered, 400 BadDeviceToken,
DeviceTokenNotForTopic) is :class:`~shared.errors.TargetGone`, to be pruned.

:func:`priority`, :func:`expiration` and :func:`collapse_id` are the APNs header values of a
payload; the FCM provider passes the same headers on to Apple for iOS apps.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shared.config import Settings
from shared.errors import (
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    TargetGone,
    TemporaryDeliveryError,
)
from shared.messages import fits_a_header
from shared.payloads import PushPayload, PushTarget
from workers.providers.base import Outgoing, SendResult
from workers.providers.http import parse_retry_after

PROVIDER = "apns"

#: Apple's limit for an alert's JSON payload.
PAYLOAD_MAX_BYTES = 4096
#: Apple's limit for ``apns-collapse-id``.
COLLAPSE_ID_MAX_BYTES = 64
#: How long one provider token is used: under Apple's one-hour limit with room for clock
#: skew, above its 20-minute minimum between updates.
PROVIDER_TOKEN_REUSE_S = 50 * 60
#: The least time between two provider tokens made because Apple refused one.
PROVIDER_TOKEN_MIN_RENEWAL_S = 20 * 60
#: How long an idle connection to Apple is kept for the next notification.
IDLE_CONNECTION_S = 600.0

#: Device tokens are hexadecimal (64 digits today; Apple warns the length may change). Only
#: such a token may stand in the request path.
DEVICE_TOKEN = re.compile(r"[0-9A-Fa-f]{8,512}")

#: Error codes shared with the other push providers.
TOKEN_GONE = "push_token_gone"
TOO_LARGE = "push_too_large"
UNAUTHORIZED = "apns_unauthorized"

#: Apple no longer delivers to this token (for this app): prune it.
GONE_REASONS = frozenset({"Unregistered", "ExpiredToken", "BadDeviceToken", "DeviceTokenNotForTopic"})
#: Our provider token was refused: a new one may help, the message is fine.
PROVIDER_TOKEN_REASONS = frozenset({"ExpiredProviderToken", "InvalidProviderToken"})


def priority(urgency: str) -> str:
    """``apns-priority``: 10 (deliver now) for ``high`` urgency; 5 (as power allows) otherwise."""
    return "10" if urgency == "high" else "5"


def expiration(ttl: int, now: float) -> int:
    """``apns-expiration`` for a TTL in seconds: 0 (try once, do not store) for 0, else the
    UNIX time it ends."""
    return 0 if ttl == 0 else int(now) + ttl


def collapse_id(topic: str) -> str:
    """The topic as a collapse id when it fits one (64 bytes of header-safe ASCII); its
    SHA-256 in hex (64 characters) otherwise, so that long topics still collapse."""
    if topic.isascii() and len(topic) <= COLLAPSE_ID_MAX_BYTES and fits_a_header(topic):
        return topic
    return hashlib.sha256(topic.encode()).hexdigest()


def token_hint(token: str) -> str:
    """A device token as it may appear in errors and logs: its first characters only."""
    return f"{token[:8]}…"


def notification_body(payload: PushPayload) -> bytes:
    """The JSON payload: the alert under ``aps``, the URL and data as custom keys beside it.
    Raises PermanentDeliveryError (``push_too_large``) over Apple's 4 KiB."""
    aps: dict[str, Any] = {"alert": {"title": payload.title, "body": payload.body}, "sound": "default"}
    if payload.topic:
        # Notifications that replace one another also belong together on the lock screen.
        aps["thread-id"] = payload.topic
    document: dict[str, Any] = dict(payload.data)
    if payload.url:
        document["url"] = payload.url
    # Set last: ``aps`` is Apple's key, a data item of that name must not replace it.
    document["aps"] = aps
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    if len(body) > PAYLOAD_MAX_BYTES:
        raise PermanentDeliveryError(
            f"APNs payload is {len(body)} bytes, Apple takes at most {PAYLOAD_MAX_BYTES}", code=TOO_LARGE
        )
    return body


def answer_error(response: httpx.Response, device_token: str) -> DeliveryError:
    """The delivery error for an APNs answer other than 200."""
    status = response.status_code
    reason = _reason(response)
    text = f"APNs HTTP {status}" + (f" {reason}" if reason else "")
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if reason in GONE_REASONS or status == 410:
        gone = f"{text}: device token {token_hint(device_token)}{_since(response)}"
        return TargetGone(gone, code=TOKEN_GONE)
    if status == 403:
        # Our key, team or token: the credentials need fixing (or a new token), not the message.
        return TemporaryDeliveryError(text, code=UNAUTHORIZED)
    if status == 413 or reason == "PayloadTooLarge":
        return PermanentDeliveryError(text, code=TOO_LARGE)
    if status in (408, 429) or status >= 500:
        return TemporaryDeliveryError(text, code=_code(reason, status), retry_after_ms=retry_after)
    return PermanentDeliveryError(text, code=_code(reason, status))


def classify(exc: BaseException, device_token: str = "") -> DeliveryError:
    """A transport failure (no answer from Apple) as a delivery error: always temporary."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return TemporaryDeliveryError("APNs did not answer in time", code="apns_timeout")
    described = described_without(exc, device_token)
    if isinstance(exc, httpx.HTTPError | OSError):
        return TemporaryDeliveryError(f"APNs request failed: {described}", code="apns_connection")
    return TemporaryDeliveryError(f"APNs failed unexpectedly: {described}", code="apns_error")


def described_without(exc: BaseException, device_token: str) -> str:
    """An exception's type and text, the device token (the request path holds it) cut to
    its hint should the text quote the URL."""
    text = str(exc)
    if device_token:
        text = text.replace(device_token, token_hint(device_token))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _reason(response: httpx.Response) -> str | None:
    try:
        document = json.loads(response.content)
    except ValueError:
        return None
    reason = document.get("reason") if isinstance(document, dict) else None
    return reason if isinstance(reason, str) and reason else None


def _since(response: httpx.Response) -> str:
    """When Apple last knew the token to be valid (410 answers carry it), as text."""
    try:
        stamp = json.loads(response.content).get("timestamp")
        return f" is no longer active since {datetime.fromtimestamp(int(stamp) / 1000, UTC).isoformat()}"
    except (ValueError, TypeError, AttributeError, OverflowError, OSError):
        return " is no longer valid"


def _code(reason: str | None, status: int) -> str:
    """``apns_`` and Apple's reason in snake case (``TooManyRequests``: ``apns_too_many_requests``)."""
    if not reason:
        return f"apns_{status}"
    return "apns_" + re.sub(r"(?<!^)(?=[A-Z])", "_", reason).lower()


def _message_uuid(message_id: str) -> str | None:
    """Our message id as Apple's ``apns-id`` (a canonical UUID), when it is one."""
    try:
        return str(uuid.UUID(message_id))
    except ValueError:
        return None


def _signing_key(pem: str) -> ec.EllipticCurvePrivateKey:
    refused = ConfigError("APNS_KEY must be the .p8 signing key from Apple (a PEM P-256 private key)")
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise refused from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise refused
    return key


def _tls(ca_file: str | None) -> ssl.SSLContext:
    """Verification against APNS_CA_FILE alone when set, the system's trust store otherwise."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except OSError as exc:  # ssl.SSLError included
        raise ConfigError(f"APNS_CA_FILE could not be loaded: {exc}") from None


@dataclass(frozen=True, slots=True)
class _ProviderToken:
    value: str
    issued_at: float


class ApnsProvider:
    """Send alerts to Apple devices with the team's token signing key."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        push = settings.push
        missing = [
            name
            for name, value in (
                ("APNS_KEY", push.apns_key),
                ("APNS_KEY_ID", push.apns_key_id),
                ("APNS_TEAM_ID", push.apns_team_id),
            )
            if not value
        ]
        if missing or not (push.apns_key and push.apns_key_id and push.apns_team_id):
            raise ConfigError(f"{', '.join(missing)} must be set to send through APNs")
        self._key = _signing_key(push.apns_key)
        self._key_id = push.apns_key_id
        self._team_id = push.apns_team_id
        self._default_topic = push.apns_topic
        self._api_base = push.apns_api_base
        self._tls = _tls(push.apns_ca_file)
        self._timeout_s = push.timeout_ms / 1000
        #: Wall-clock time (token ``iat``, expirations); replaceable so tests need not wait.
        self._clock = clock
        self._token: _ProviderToken | None = None
        self._renewed_at: float | None = None
        self._client_of: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient] | None = None

    async def send(self, message: Outgoing[PushPayload], target: PushTarget) -> SendResult:
        url, headers, body = self._request(message, target)
        bearer = self._provider_token()
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._client().post(
                    url, content=body, headers={**headers, "authorization": f"bearer {bearer}"}
                )
        except Exception as exc:
            raise classify(exc, target.token) from exc
        if response.status_code == 200:
            apns_id = response.headers.get("apns-id") or headers.get("apns-id")
            return SendResult(provider_message_id=apns_id, delivered=False, provider=PROVIDER)
        error = answer_error(response, target.token)
        if _reason(response) in PROVIDER_TOKEN_REASONS:
            self._renew(bearer)
        raise error

    def _request(
        self, message: Outgoing[PushPayload], target: PushTarget
    ) -> tuple[str, dict[str, str], bytes]:
        """The URL, headers (without authorization) and body; refusals that need no request."""
        token = target.token
        if not DEVICE_TOKEN.fullmatch(token):
            # Apple would answer BadDeviceToken; such a value must not reach the request path.
            raise TargetGone(f"{token_hint(token)} is not an APNs device token", code=TOKEN_GONE)
        topic = target.app_id or self._default_topic
        if not topic:
            raise PermanentDeliveryError(
                "the device names no app and APNS_TOPIC is unset: APNs needs the app's bundle id",
                code="apns_no_topic",
            )
        if not (topic.isascii() and fits_a_header(topic)):
            raise PermanentDeliveryError(f"{topic!r} is not a bundle id", code="apns_bad_topic")
        payload = message.payload
        headers = {"apns-topic": topic, "apns-push-type": "alert", "apns-priority": priority(payload.urgency)}
        if payload.ttl is not None:
            headers["apns-expiration"] = str(expiration(payload.ttl, self._clock()))
        if payload.topic:
            headers["apns-collapse-id"] = collapse_id(payload.topic)
        if apns_id := _message_uuid(message.id):
            headers["apns-id"] = apns_id
        return f"{self._api_base}/3/device/{token}", headers, notification_body(payload)

    def _provider_token(self) -> str:
        """The current provider token, signed anew once it is PROVIDER_TOKEN_REUSE_S old (or
        was refused). Synchronous: no other send can interleave between check and update."""
        now = self._clock()
        token = self._token
        if token is None or not 0 <= now - token.issued_at < PROVIDER_TOKEN_REUSE_S:
            signed = jwt.encode(
                {"iss": self._team_id, "iat": int(now)},
                self._key,
                algorithm="ES256",
                # Apple's documented header is alg and kid alone (typ=None leaves PyJWT's out).
                headers={"kid": self._key_id, "typ": None},
            )
            token = self._token = _ProviderToken(signed, now)
        return token.value

    def _renew(self, refused: str) -> None:
        """Drop a provider token Apple refused, so the next attempt signs a new one: once for
        all the attempts refused with it, and at most once per PROVIDER_TOKEN_MIN_RENEWAL_S."""
        if self._token is None or self._token.value != refused:
            return  # already replaced
        now = self._clock()
        if self._renewed_at is not None and 0 <= now - self._renewed_at < PROVIDER_TOKEN_MIN_RENEWAL_S:
            return
        self._renewed_at = now
        self._token = None

    def _client(self) -> httpx.AsyncClient:
        """The running loop's HTTP/2 client, made at its first notification."""
        loop = asyncio.get_running_loop()
        if self._client_of is None or self._client_of[0] is not loop:
            client = httpx.AsyncClient(
                http2=True,
                verify=self._tls,
                timeout=httpx.Timeout(self._timeout_s),
                limits=httpx.Limits(keepalive_expiry=IDLE_CONNECTION_S),
                trust_env=False,
            )
            self._client_of = (loop, client)
        return self._client_of[1]

    async def close(self) -> None:
        """Close the loop's connection to Apple."""
        held, self._client_of = self._client_of, None
        if held is not None and held[0] is asyncio.get_running_loop():
            await held[1].aclose()
