"""Web push: a browser's push subscription, reached through its push service.

The protocol is three RFCs, each used as browsers and the big push services (FCM, Mozilla's
autopush, Apple's web.push.apple.com, WNS) expect:

- RFC 8030 (the HTTP push protocol): one ``POST`` to the subscription's endpoint URL with a
  ``TTL`` (how long the service keeps the message for an offline browser; we default to the
  services' own four-week cap), an ``Urgency`` and, when the payload has one, a ``Topic``
  (a newer message with the same topic replaces one still waiting). A topic must be at most
  32 characters of the URL-safe base64 alphabet; any other topic is sent as a stable digest
  of it, so "the same topic" still holds, while the notification's ``tag`` keeps it as given.
- RFC 8291 (message encryption): the JSON body is encrypted for the browser (its P-256 key
  ``p256dh`` and 16-byte ``auth`` secret) as one ``aes128gcm`` record by ``http_ece``, the
  reference implementation the Web Push libraries share, with a fresh ephemeral key per
  message. Push services accept 4096 bytes of encrypted body; a larger one is refused here,
  before any request, since no service would take it.
- RFC 8292 (VAPID): ``Authorization: vapid t=<JWT>, k=<our public key>``, the JWT signed
  ES256 with VAPID_PRIVATE_KEY, its ``aud`` the endpoint's origin, ``sub`` VAPID_SUBJECT and
  ``exp`` twelve hours ahead (services refuse more than 24). The header is the same for every
  message to one push service until it nears expiry, so it is signed once per audience and
  kept, not signed per message.

Subscription endpoints come from browsers, that is from users, so the HTTP client is guarded
exactly as the webhook provider's is (:mod:`shared.netguard`): every name is resolved through
:class:`~workers.providers.http.GuardedResolver`, a literal address is checked before the
request, redirects are not followed, and no cookies are kept. One ``aiohttp`` session per
event loop pools connections to the few push services every subscription points at, and one
deadline (PUSH_TIMEOUT) covers each attempt.

The endpoint's path is a capability (whoever knows it can push to that browser): errors and
logs name the endpoint's origin only.

Answers: any 2xx is accepted for onward delivery (``201 Created`` with the message's
``Location`` is the RFC's); 404 and 410 say the subscription is gone
(:class:`~shared.errors.TargetGone`: prune it); 401 and 403 say the service refused our VAPID
key, which is a configuration fault, not the message's, so the message waits; 413 is a
payload too large; 408, 429 and 5xx are temporary (429 and 503 with their ``Retry-After``);
other 4xx are permanent.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import http_ece  # type: ignore[import-untyped]
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from yarl import URL

from shared import netguard
from shared.config import Settings
from shared.errors import (
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    TargetGone,
    TemporaryDeliveryError,
)
from shared.messages import PUSH_MAX_TTL_SECONDS, check_http_url
from shared.payloads import PUSH_URGENCIES, PushPayload, PushTarget
from shared.push_settings import load_vapid_private_key
from workers.providers.base import Outgoing, SendResult
from workers.providers.http import check_literal, guarded_session, parse_retry_after

PROVIDER_NAME = "webpush"

#: Kept by the push service for an offline browser when the payload names no TTL: four
#: weeks, the longest FCM keeps anything (longer values are clamped by the services anyway).
DEFAULT_TTL_SECONDS = PUSH_MAX_TTL_SECONDS

#: The encrypted body every push service accepts (RFC 8030 §7.2 asks for at least this much;
#: FCM, autopush and Apple take no more).
MAX_BODY_BYTES = 4096

#: The JWT's lifetime. RFC 8292 §2 lets services refuse more than 24 hours; half of that
#: leaves room for clocks that are minutes apart.
VAPID_LIFETIME_SECONDS = 12 * 60 * 60
#: A kept header is signed again once it has less than this left, so no request ever carries
#: a token about to expire in flight.
VAPID_RENEW_BEFORE_SECONDS = 60 * 60
#: Signed headers kept at once. Audiences are push services (a handful), but endpoints come
#: from users, who could name many origins: the cache must not grow with them.
VAPID_CACHE_MAX = 256

#: RFC 8030 §5.4: a topic is at most 32 characters of the URL and filename safe alphabet.
TOPIC_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")

#: Connections the process may hold open at once, all push services together.
MAX_CONNECTIONS = 1024
#: What we read of an error answer, for its message (services answer a line of JSON or text).
ERROR_EXCERPT_BYTES = 512
ERROR_EXCERPT_CHARS = 200

#: Statuses that say "not now" besides 5xx.
TEMPORARY_STATUSES = frozenset({408, 429})
#: Statuses whose Retry-After we pass on.
RETRY_AFTER_STATUSES = frozenset({429, 503})
#: The subscription no longer exists (expired, or the browser unsubscribed).
GONE_STATUSES = frozenset({404, 410})
#: The service refused our VAPID credentials (or they do not match the subscription's
#: applicationServerKey): fix the configuration, the message is fine.
UNAUTHORIZED_STATUSES = frozenset({401, 403})

USER_AGENT = "KAI-Messaging-WebPush/1.0"


# -- keys --------------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    """Base64url without padding, the encoding of every key in the Web Push APIs."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Base64url with or without padding; ValueError for anything else."""
    raw = text.strip()
    standard = raw.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64url: {exc}") from None


def _public_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The uncompressed point (65 bytes): what ``applicationServerKey`` and ``k`` carry."""
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def generate_vapid_keys() -> tuple[str, str]:
    """A new VAPID key pair: (the private key as raw 32 bytes, base64url; the public key as
    the 65-byte uncompressed point, base64url), the forms ``web-push generate-vapid-keys``
    prints and browsers take as ``applicationServerKey``."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_numbers().private_value.to_bytes(32, "big")
    return b64url(private), b64url(_public_bytes(key))


def _configured_key(settings: Settings) -> tuple[ec.EllipticCurvePrivateKey, str]:
    """The VAPID key and subject, or ConfigError naming what is missing or malformed."""
    key_text, subject = settings.push.vapid_private_key, settings.push.vapid_subject
    missing = [
        name for name, value in (("VAPID_PRIVATE_KEY", key_text), ("VAPID_SUBJECT", subject)) if not value
    ]
    if missing or key_text is None or subject is None:
        raise ConfigError(f"{', '.join(missing)} must be set to send web push")
    # The settings' own loader: which key forms are accepted is decided in one place, and a
    # malformed key was already refused when the settings were read.
    return load_vapid_private_key(key_text), subject


def public_key(settings: Settings) -> str:
    """The VAPID public key, base64url: what the front end passes to
    ``pushManager.subscribe()`` as ``applicationServerKey``."""
    key, _subject = _configured_key(settings)
    return b64url(_public_bytes(key))


# -- VAPID -------------------------------------------------------------------------------------


def origin_of(endpoint: str) -> str:
    """The endpoint's origin (scheme, host, and port unless the default): the JWT's ``aud``,
    and the only part of an endpoint that may appear in messages."""
    return str(URL(endpoint).origin())


class VapidSigner:
    """``Authorization`` headers for each audience, signed once and reused until they near
    expiry (an ES256 signature per message would be CPU spent for nothing)."""

    def __init__(
        self, key: ec.EllipticCurvePrivateKey, subject: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = key
        self._subject = subject
        self._clock = clock
        self.public_key = b64url(_public_bytes(key))
        #: audience -> (header, exp); insertion order is age, for eviction.
        self._kept: dict[str, tuple[str, int]] = {}

    def header(self, audience: str) -> str:
        now = self._clock()
        kept = self._kept.get(audience)
        if kept is not None and kept[1] - now > VAPID_RENEW_BEFORE_SECONDS:
            return kept[0]
        expires = int(now) + VAPID_LIFETIME_SECONDS
        token = jwt.encode(
            {"aud": audience, "exp": expires, "sub": self._subject},
            self._key,
            algorithm="ES256",
            headers={"typ": "JWT"},
        )
        header = f"vapid t={token}, k={self.public_key}"
        self._kept.pop(audience, None)
        if len(self._kept) >= VAPID_CACHE_MAX:
            del self._kept[next(iter(self._kept))]
        self._kept[audience] = (header, expires)
        return header


# -- the request -------------------------------------------------------------------------------


def topic_header(topic: str) -> str:
    """``topic`` as RFC 8030 allows it in the ``Topic`` header: as it is when it fits, else a
    stable 32-character digest of it (192 bits of SHA-256: the same topic always maps to the
    same value, different ones practically never collide)."""
    if TOPIC_PATTERN.fullmatch(topic):
        return topic
    return b64url(hashlib.sha256(topic.encode()).digest()[:24])


def notification_body(payload: PushPayload) -> bytes:
    """What the service worker gets from ``event.data.json()``; absent fields are left out."""
    document: dict[str, Any] = {
        "title": payload.title,
        "body": payload.body,
        "url": payload.url,
        "icon": payload.icon,
        "data": payload.data,
        "tag": payload.topic,
    }
    shown = {key: value for key, value in document.items() if value is not None}
    return json.dumps(shown, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class _Subscription:
    endpoint: str
    origin: str
    p256dh: bytes
    auth: bytes


def _invalid(reason: str) -> PermanentDeliveryError:
    return PermanentDeliveryError(
        f"web push subscription refused: {reason}", code="push_invalid_subscription"
    )


def _subscription(target: PushTarget) -> _Subscription:
    """The target's endpoint and keys, checked: a subscription that cannot be encrypted for or
    reached fails for good before any request."""
    if target.kind != "web":
        raise _invalid(f"a {target.kind!r} device is not a web push subscription")
    try:
        check_http_url(target.token)
        origin = origin_of(target.token)
    except ValueError as exc:
        raise _invalid(f"endpoint: {exc}") from None
    if not (target.p256dh and target.auth):
        raise _invalid("the browser's p256dh and auth keys are missing")
    try:
        p256dh = b64url_decode(target.p256dh)
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), p256dh)
    except ValueError:
        raise _invalid("p256dh is not a P-256 public key in base64url") from None
    try:
        auth = b64url_decode(target.auth)
    except ValueError:
        auth = b""
    if len(p256dh) != 65 or len(auth) != 16:
        raise _invalid("p256dh must be a 65-byte point and auth a 16-byte secret, in base64url")
    return _Subscription(target.token, origin, p256dh, auth)


def encrypt(plaintext: bytes, p256dh: bytes, auth: bytes) -> bytes:
    """RFC 8291 ``aes128gcm`` for one browser: ECDH with a fresh ephemeral key, whose public
    half travels in the record header (http_ece puts it there as the key id)."""
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    sealed: bytes = http_ece.encrypt(
        plaintext, private_key=ephemeral, dh=p256dh, auth_secret=auth, version="aes128gcm"
    )
    return sealed


def push_headers(payload: PushPayload, authorization: str) -> dict[str, str]:
    if payload.urgency not in PUSH_URGENCIES:
        raise PermanentDeliveryError(
            f"urgency must be one of {', '.join(PUSH_URGENCIES)}", code="push_invalid_payload"
        )
    headers = {
        "authorization": authorization,
        "ttl": str(DEFAULT_TTL_SECONDS if payload.ttl is None else payload.ttl),
        "urgency": payload.urgency,
        "content-encoding": "aes128gcm",
        "content-type": "application/octet-stream",
        "user-agent": USER_AGENT,
    }
    if payload.topic:
        headers["topic"] = topic_header(payload.topic)
    return headers


# -- answers -----------------------------------------------------------------------------------


def _excerpt(text: str, endpoint: str) -> str:
    """A short, single-line excerpt of an error answer, with the endpoint's path scrubbed
    should the service echo it."""
    path = urlsplit(endpoint).path
    if len(path) > 1:
        text = text.replace(path, "/[redacted]")
    line = " ".join(text.split())[:ERROR_EXCERPT_CHARS]
    return f": {line}" if line else ""


def classify(status: int, origin: str, *, retry_after: str | None = None, answer: str = "") -> DeliveryError:
    """The delivery error of a push service's non-2xx answer. ``answer`` is the excerpt
    already scrubbed of the endpoint's path."""
    said = f"push service {origin} answered HTTP {status}{answer}"
    if status in GONE_STATUSES:
        return TargetGone(f"web push subscription is gone ({said})", code="push_subscription_gone")
    if status in UNAUTHORIZED_STATUSES:
        return TemporaryDeliveryError(
            f"our VAPID credentials were refused ({said}); check VAPID_PRIVATE_KEY, VAPID_SUBJECT "
            "and the applicationServerKey the front end subscribes with",
            code="webpush_unauthorized",
        )
    if status == 413:
        return PermanentDeliveryError(f"the push message is too large ({said})", code="push_too_large")
    if 400 <= status < 500 and status not in TEMPORARY_STATUSES:
        return PermanentDeliveryError(said, code=f"webpush_{status}")
    # 408, 429, 5xx, and anything unexpected (1xx, redirects, which are not followed).
    delay = parse_retry_after(retry_after) if status in RETRY_AFTER_STATUSES else None
    return TemporaryDeliveryError(said, code=f"webpush_{status}", retry_after_ms=delay)


def _transport_error(exc: BaseException, origin: str) -> DeliveryError:
    """A request that got no answer. Only the exception's type and OS reason are told:
    aiohttp's own messages can quote the whole URL, path included."""
    if isinstance(exc, TimeoutError):
        return TemporaryDeliveryError(f"push service {origin} did not answer in time", code="webpush_timeout")
    reason = type(exc).__name__
    cause = getattr(exc, "os_error", None) or (exc if isinstance(exc, OSError) else None)
    if isinstance(cause, OSError) and (cause.strerror or cause.args):
        # Socket-level reasons name at most the host and port, never the path.
        reason += f" ({cause.strerror or cause.args[0]})"
    return TemporaryDeliveryError(f"push service {origin} unreachable: {reason}", code="webpush_connection")


async def _read_excerpt(response: aiohttp.ClientResponse, deadline: float) -> str:
    """Up to ERROR_EXCERPT_BYTES of an error answer; what does not arrive by the deadline is
    not waited for (the status already decides)."""
    try:
        async with asyncio.timeout_at(deadline):
            data = await response.content.read(ERROR_EXCERPT_BYTES)
    except (TimeoutError, aiohttp.ClientError):
        return ""
    return data.decode("utf-8", errors="replace")


# -- the provider ------------------------------------------------------------------------------


class WebPushProvider:
    """Send web push notifications signed with our VAPID key; one pooled, address-guarded
    client per event loop."""

    def __init__(self, settings: Settings) -> None:
        key, subject = _configured_key(settings)
        self._vapid = VapidSigner(key, subject)
        self._timeout_s = settings.push.timeout_ms / 1000
        self._policy = settings.address_policy
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    @property
    def public_key(self) -> str:
        return self._vapid.public_key

    async def send(self, message: Outgoing[PushPayload], target: PushTarget) -> SendResult:
        subscription = _subscription(target)
        headers = push_headers(message.payload, self._vapid.header(subscription.origin))
        body = encrypt(notification_body(message.payload), subscription.p256dh, subscription.auth)
        if len(body) > MAX_BODY_BYTES:
            raise PermanentDeliveryError(
                f"the encrypted notification is {len(body)} bytes; push services take at most "
                f"{MAX_BODY_BYTES}",
                code="push_too_large",
            )
        return await self._post(subscription, body, headers)

    async def _post(self, subscription: _Subscription, body: bytes, headers: dict[str, str]) -> SendResult:
        origin = subscription.origin
        # Enforced by the event loop around the whole attempt, whatever the service does.
        deadline = asyncio.get_running_loop().time() + self._timeout_s
        try:
            check_literal(subscription.endpoint, self._policy, "push endpoints")
            async with asyncio.timeout_at(deadline):
                response = await self._client().post(
                    subscription.endpoint, data=body, headers=headers, allow_redirects=False
                )
            try:
                status = response.status
                if 200 <= status < 300:
                    return SendResult(
                        provider_message_id=response.headers.get("location"),
                        delivered=False,
                        provider=PROVIDER_NAME,
                    )
                retry_after = response.headers.get("retry-after")
                answer = _excerpt(await _read_excerpt(response, deadline), subscription.endpoint)
            finally:
                response.release()
        except netguard.AddressRefused as exc:
            raise PermanentDeliveryError(
                f"push service {origin} refused: {exc}", code="webpush_address_refused"
            ) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            # Not chained: the exception's text may carry the endpoint's path.
            raise _transport_error(exc, origin) from None
        raise classify(status, origin, retry_after=retry_after, answer=answer)

    def _client(self) -> aiohttp.ClientSession:
        """The pooled session of the running loop, made at first use."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session_loop is not loop:
            self._session_loop = loop
            self._session = guarded_session(self._policy, timeout_s=self._timeout_s)
        return self._session

    async def close(self) -> None:
        """Close the loop's HTTP session (its pooled sockets)."""
        session, self._session = self._session, None
        if session is not None and self._session_loop is asyncio.get_running_loop():
            await session.close()
