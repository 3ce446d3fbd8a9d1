"""A local web push service, checking what a real one checks (RFC 8030, 8291, 8292).

``subscribe()`` plays the browser's part of ``pushManager.subscribe()``: a fresh P-256 key
pair and 16-byte auth secret, and an endpoint ``http://127.0.0.1:<port>/push/<id>`` on this
service. ``POST /push/<id>`` is then checked as FCM, autopush and Apple check it:

- VAPID (RFC 8292): ``Authorization: vapid t=<JWT>, k=<key>``; the JWT's signature is
  verified here with ``cryptography`` (ES256 in the JWS form, raw ``r || s``, not DER), its
  ``aud`` must be this service's origin, ``exp`` in the future and at most 24 hours ahead,
  ``sub`` a ``mailto:`` or ``https:`` URL; a subscription made with an
  ``applicationServerKey`` takes pushes signed with that key only (403 otherwise, as FCM).
  A failed check answers 401.
- RFC 8030: ``TTL`` present and a number of seconds, ``Urgency`` one of the four, ``Topic``
  at most 32 URL-safe base64 characters; 400 otherwise. A body over ``max_body`` bytes
  (4096, what the services take) answers 413.
- RFC 8291: ``Content-Encoding: aes128gcm``, one record whose key id is the sender's 65-byte
  public key; the body is then decrypted with the subscription's private key and auth
  secret (``http_ece``), as the browser would, and must be the JSON a service worker reads.

An accepted push is recorded as a :class:`Delivered` and answered ``201 Created`` with a
``Location``; a refused one as a :class:`Rejection` with its status and reason. Tests can
make a subscription (or every one) answer 404/410 (expired, unsubscribed), 429 with
``Retry-After``, 5xx …, for the next requests or for good, and slow answers down.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import http_ece  # type: ignore[import-untyped]
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tests.sinks.faults import take_next
from tests.sinks.http_server import HttpSink, QuietServer
from tests.waiting import await_until

#: The encrypted body the big push services take at most.
DEFAULT_MAX_BODY = 4096
#: RFC 8292 §2: a JWT expiring further ahead than this is refused.
MAX_JWT_LIFETIME_SECONDS = 24 * 60 * 60
URGENCIES = ("very-low", "low", "normal", "high")
#: RFC 8291 §4: the aes128gcm header is salt (16) + record size (4) + key id length (1) +
#: the sender's uncompressed public key (65).
AES128GCM_HEADER_BYTES = 86
BASE64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64url: {exc}") from None


@dataclass(frozen=True)
class Subscription:
    """A browser's push subscription: the endpoint and public keys it hands the application
    server, and the private key and auth secret it keeps to decrypt pushes."""

    id: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    auth_secret: bytes = field(repr=False)
    #: The VAPID public key the subscription was made with, if any (base64url).
    application_server_key: str | None = None

    @property
    def p256dh(self) -> str:
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64url(point)

    @property
    def auth(self) -> str:
        return b64url(self.auth_secret)

    def as_json(self) -> dict[str, Any]:
        """``PushSubscription.toJSON()`` as browsers give it."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}

    def decrypt(self, body: bytes) -> bytes:
        """What the browser reads from an ``aes128gcm`` push body."""
        plaintext: bytes = http_ece.decrypt(
            body, private_key=self.private_key, auth_secret=self.auth_secret, version="aes128gcm"
        )
        return plaintext


@dataclass(frozen=True)
class Delivered:
    """A push the service accepted, decrypted."""

    subscription_id: str
    #: Request headers, names lower-cased.
    headers: dict[str, str]
    #: The decrypted JSON document.
    payload: dict[str, Any]
    #: The verified VAPID JWT's header and claims, and the key it was verified with.
    jwt_header: dict[str, Any]
    claims: dict[str, Any]
    vapid_key: str
    #: The encrypted body's size.
    body_bytes: int
    location: str


@dataclass(frozen=True)
class Rejection:
    """A push the service refused, and why."""

    subscription_id: str | None
    status: int
    reason: str
    headers: dict[str, str]


@dataclass
class _Fault:
    status: int
    remaining: int | None  # None: forever
    subscription_id: str | None  # None: every subscription
    retry_after: str | None = None


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _parse_vapid(header: str | None) -> tuple[str, str]:
    """The ``t`` and ``k`` of an RFC 8292 ``vapid`` Authorization header."""
    if not header:
        raise _Refused(401, "missing Authorization")
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "vapid":
        raise _Refused(401, f"Authorization scheme must be vapid, not {scheme!r}")
    params: dict[str, str] = {}
    for item in rest.split(","):
        name, _, value = item.strip().partition("=")
        params[name.strip().lower()] = value.strip()
    if not params.get("t") or not params.get("k"):
        raise _Refused(401, "vapid Authorization needs t= and k=")
    return params["t"], params["k"]


def _public_key(k: str) -> ec.EllipticCurvePublicKey:
    try:
        raw = b64url_decode(k)
        if len(raw) != 65 or raw[0] != 4:
            raise ValueError("not an uncompressed point")
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError as exc:
        raise _Refused(401, f"k is not a P-256 public key ({exc})") from None


def _verify_jwt(token: str, key: ec.EllipticCurvePublicKey) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of an ES256 JWT whose signature ``key`` verifies."""
    parts = token.split(".")
    if len(parts) != 3:
        raise _Refused(401, "t is not a JWS compact serialization")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except ValueError as exc:
        raise _Refused(401, f"t does not decode ({exc})") from None
    if not isinstance(header, dict) or header.get("alg") != "ES256":
        raise _Refused(401, "the JWT must be signed ES256")
    if header.get("typ", "JWT").upper() != "JWT":
        raise _Refused(401, "the JWT header's typ must be JWT")
    if len(signature) != 64:
        raise _Refused(401, "an ES256 JWS signature is r || s, 64 bytes (not DER)")
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    try:
        key.verify(encode_dss_signature(r, s), f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise _Refused(401, "the JWT signature does not verify with k") from None
    if not isinstance(claims, dict):
        raise _Refused(401, "the JWT claims are not an object")
    return header, claims


def _check_claims(claims: dict[str, Any], origin: str) -> None:
    if claims.get("aud") != origin:
        raise _Refused(401, f"aud must be {origin}, got {claims.get('aud')!r}")
    exp = claims.get("exp")
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise _Refused(401, "exp must be a number of seconds")
    now = time.time()
    if exp <= now:
        raise _Refused(401, "the JWT has expired")
    if exp > now + MAX_JWT_LIFETIME_SECONDS:
        raise _Refused(401, "exp is more than 24 hours ahead")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.startswith(("mailto:", "https:")):
        raise _Refused(401, "sub must be a mailto: or https: URL")


def _check_push_headers(headers: dict[str, str]) -> None:
    ttl = headers.get("ttl")
    if ttl is None or not (ttl.isascii() and ttl.isdigit()):
        raise _Refused(400, "TTL header missing or not a number of seconds")
    urgency = headers.get("urgency")
    if urgency is not None and urgency not in URGENCIES:
        raise _Refused(400, f"Urgency must be one of {', '.join(URGENCIES)}")
    topic = headers.get("topic")
    if topic is not None and not (0 < len(topic) <= 32 and set(topic) <= BASE64URL):
        raise _Refused(400, "Topic must be 1 to 32 URL-safe base64 characters")


def _decrypt(subscription: Subscription, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    if headers.get("content-encoding") != "aes128gcm":
        raise _Refused(400, "Content-Encoding must be aes128gcm")
    if len(body) <= AES128GCM_HEADER_BYTES or body[20] != 65:
        raise _Refused(400, "the aes128gcm key id must be the sender's 65-byte public key")
    record_size = int.from_bytes(body[16:20], "big")
    if len(body) - AES128GCM_HEADER_BYTES > record_size:
        raise _Refused(400, "a push message must be a single record (RFC 8291 §4)")
    try:
        plaintext = subscription.decrypt(body)
    except http_ece.ECEException as exc:
        raise _Refused(400, f"the payload does not decrypt: {exc.message}") from None
    try:
        document = json.loads(plaintext)
    except ValueError:
        raise _Refused(400, "the decrypted payload is not JSON") from None
    if not isinstance(document, dict):
        raise _Refused(400, "the decrypted payload is not a JSON object")
    return document


class _Handler(BaseHTTPRequestHandler):
    server: QuietServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def _answer(self, status: int, text: str = "", headers: dict[str, str] | None = None) -> None:
        data = text.encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer(405, "push endpoints take POST")

    def do_POST(self) -> None:
        service: PushService = self.server.owner
        headers = {name.lower(): value for name, value in self.headers.items()}
        length = self.headers.get("Content-Length")
        body = self.rfile.read(int(length)) if length and length.isdigit() else b""
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        subscription_id = parts[1] if len(parts) == 2 and parts[0] == "push" else None
        try:
            if length is None:
                raise _Refused(411, "Content-Length required")
            delivered = service._accept(subscription_id, headers, body)
        except _Refused as refused:
            service._reject(Rejection(subscription_id, refused.status, refused.reason, headers))
            self._answer(refused.status, refused.reason)
            return
        if isinstance(delivered, _Fault):
            extra = {"Retry-After": delivered.retry_after} if delivered.retry_after else {}
            self._answer(delivered.status, f"programmed answer {delivered.status}", extra)
            return
        self._answer(201, headers={"Location": delivered.location})


class PushService(HttpSink):
    """A push service on 127.0.0.1. Use as a context manager or call start()/stop()."""

    handler = _Handler

    def __init__(self, *, max_body: int = DEFAULT_MAX_BODY) -> None:
        #: Bodies larger than this are refused with 413.
        self.max_body = max_body
        #: Seconds each checked request waits before its answer (timeout tests).
        self.delay = 0.0
        self._cond = threading.Condition()
        self._subscriptions: dict[str, Subscription] = {}
        self._deliveries: list[Delivered] = []
        self._rejections: list[Rejection] = []
        self._faults: list[_Fault] = []
        self._origin: str | None = None

    def start(self) -> PushService:
        super().start()
        self._origin = self.base_url
        return self

    @property
    def origin(self) -> str:
        """The service's origin: the ``aud`` its VAPID JWTs must carry (still known once
        stopped, for assertions)."""
        assert self._origin is not None, "start the push service first"
        return self._origin

    # -- the browser's side --------------------------------------------------------------------

    def subscribe(self, application_server_key: str | None = None) -> Subscription:
        """A new subscription, as ``pushManager.subscribe({applicationServerKey})`` makes one."""
        subscription_id = secrets.token_urlsafe(24)
        subscription = Subscription(
            id=subscription_id,
            endpoint=f"{self.origin}/push/{subscription_id}",
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth_secret=secrets.token_bytes(16),
            application_server_key=application_server_key,
        )
        with self._cond:
            self._subscriptions[subscription_id] = subscription
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """The browser unsubscribed: its endpoint answers 410 Gone from now on."""
        self.fail_always(410, subscription)

    # -- programmed answers --------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        subscription: Subscription | None = None,
        *,
        times: int = 1,
        retry_after: str | None = None,
    ) -> None:
        """Answer the next ``times`` pushes that pass the checks (to ``subscription``, or to
        any) with ``status``, and ``Retry-After`` when given."""
        sid = subscription.id if subscription is not None else None
        with self._cond:
            self._faults.append(_Fault(status, times, sid, retry_after))

    def fail_always(
        self, status: int, subscription: Subscription | None = None, *, retry_after: str | None = None
    ) -> None:
        sid = subscription.id if subscription is not None else None
        with self._cond:
            self._faults.append(_Fault(status, None, sid, retry_after))

    def clear_faults(self) -> None:
        with self._cond:
            self._faults.clear()

    def reset(self) -> None:
        """Forget faults and what arrived (between tests sharing one service); subscriptions stay."""
        with self._cond:
            self._faults.clear()
            self._deliveries.clear()
            self._rejections.clear()

    # -- what arrived --------------------------------------------------------------------------

    @property
    def deliveries(self) -> list[Delivered]:
        with self._cond:
            return list(self._deliveries)

    @property
    def rejections(self) -> list[Rejection]:
        with self._cond:
            return list(self._rejections)

    def deliveries_to(self, subscription: Subscription) -> list[Delivered]:
        return [d for d in self.deliveries if d.subscription_id == subscription.id]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Delivered]:
        """Block until ``count`` pushes were accepted; AssertionError after ``timeout``."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._deliveries) >= count, timeout=timeout):
                got, refused = len(self._deliveries), [r.reason for r in self._rejections]
                raise AssertionError(
                    f"push service got {got} of {count} pushes in {timeout}s; refused: {refused}"
                )
            return list(self._deliveries)

    async def until_delivered(self, count: int, timeout: float = 10.0) -> list[Delivered]:
        """:meth:`wait_for` for a test whose sender runs on its own event loop: the loop keeps
        running while it waits."""
        await await_until(
            lambda: len(self.deliveries) >= count,
            timeout=timeout,
            message=lambda: f"push service got {len(self.deliveries)} of {count} pushes",
        )
        return self.deliveries

    def wait_for_rejections(self, count: int, timeout: float = 10.0) -> list[Rejection]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._rejections) >= count, timeout=timeout):
                raise AssertionError(f"push service refused {len(self._rejections)} of {count} pushes")
            return list(self._rejections)

    # -- the handler's side --------------------------------------------------------------------

    def _accept(
        self, subscription_id: str | None, headers: dict[str, str], body: bytes
    ) -> Delivered | _Fault:
        """Check one push; the delivery, or the programmed answer due. Raises _Refused."""
        with self._cond:
            subscription = self._subscriptions.get(subscription_id or "")
        if subscription is None:
            raise _Refused(404, "no such subscription")
        token, k = _parse_vapid(headers.get("authorization"))
        key = _public_key(k)
        jwt_header, claims = _verify_jwt(token, key)
        _check_claims(claims, self.origin)
        expected = subscription.application_server_key
        if expected is not None and b64url_decode(expected) != b64url_decode(k):
            raise _Refused(403, "the VAPID key is not the subscription's applicationServerKey")
        _check_push_headers(headers)
        if len(body) > self.max_body:
            raise _Refused(413, f"payload over {self.max_body} bytes")
        if self.delay:
            self._sleep(self.delay)
        with self._cond:
            fault = take_next([f for f in self._faults if f.subscription_id in (None, subscription.id)])
        if fault is not None:
            return fault
        payload = _decrypt(subscription, headers, body) if body else {}
        delivered = Delivered(
            subscription_id=subscription.id,
            headers=headers,
            payload=payload,
            jwt_header=jwt_header,
            claims=claims,
            vapid_key=k,
            body_bytes=len(body),
            location=f"{self.origin}/message/{secrets.token_urlsafe(16)}",
        )
        with self._cond:
            self._deliveries.append(delivered)
            self._cond.notify_all()
        return delivered

    def _sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when the service stops (shutdown is never held)."""
        runner = self._runner
        if runner is not None:
            runner.server.stopping.wait(seconds)

    def _reject(self, rejection: Rejection) -> None:
        with self._cond:
            self._rejections.append(rejection)
            self._cond.notify_all()
