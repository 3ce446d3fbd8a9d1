"""A local stand-in for the Apple Push Notification service's provider API.

Apple's API speaks HTTP/2 over TLS and nothing else, so this peer does too: hypercorn serves
a small ASGI application on 127.0.0.1 from a background thread with its own event loop,
with a certificate for 127.0.0.1 issued by a throwaway CA (``ca_file``) and ALPN offering
``h2`` only. A client that did not negotiate HTTP/2 is refused (400 ``BadProtocol``, a
reason of the peer's own: Apple's servers do not talk to it at all).

``POST /3/device/<token>`` is checked the way Apple checks it: the provider token (an ES256
JWT whose signature, ``kid``, ``iss`` and ``iat`` are verified against :meth:`signing_key`'s
public half, ``key_id`` and ``team_id``), the ``apns-*`` headers, the device token (it must
have been :meth:`register`-ed for the ``apns-topic`` sent) and the JSON payload (at most
4096 bytes, with an ``aps`` dictionary). Accepted notifications answer 200 with ``apns-id``
and are recorded; refusals answer Apple's ``{"reason": …}`` document. ``fail_next``
programs failures (429 TooManyRequests, 503, 403 ExpiredProviderToken …), and
:meth:`unregister` makes a token answer 410 Unregistered with its ``timestamp``.

Apple documents no reason for a body that is not a JSON object with ``aps``; the peer
answers 400 ``BadPayload`` for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import logging
import re
import secrets
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypercorn.asyncio import serve
from hypercorn.config import Config

from tests.sinks.faults import take_next

#: Apple's limit for a notification payload (VoIP pushes may be 5120; not modelled).
PAYLOAD_MAX_BYTES = 4096
#: Apple refuses provider tokens issued more than an hour ago.
PROVIDER_TOKEN_MAX_AGE_S = 3600
#: Clock skew tolerated for an ``iat`` in the future.
CLOCK_SKEW_S = 60
PUSH_TYPES = frozenset({"alert", "background", "location", "voip", "complication", "fileprovider", "mdm"})
PRIORITIES = frozenset({"1", "5", "10"})
DEVICE_PATH = re.compile(r"/3/device/(?P<token>[^/]*)")
DEVICE_TOKEN = re.compile(r"[0-9a-f]{64}")
APNS_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
DEFAULT_BUNDLE_ID = "com.example.app"

ASGIReceive = Callable[[], Awaitable[dict[str, Any]]]
ASGISend = Callable[[dict[str, Any]], Awaitable[None]]

log = logging.getLogger(__name__)


@dataclass
class _Fault:
    status: int
    reason: str
    retry_after: int | None
    timestamp: int | None
    remaining: int | None  # None: forever


@dataclass(frozen=True)
class ApnsNotification:
    """One notification the peer accepted."""

    device_token: str
    apns_id: str
    #: The request's headers, names lowercased (the authorization header included).
    headers: dict[str, str]
    payload: dict[str, Any]
    http_version: str
    #: The provider token (JWT) that authorized it.
    provider_token: str


class _Refusal(Exception):
    """What Apple would answer instead of accepting the notification."""

    def __init__(
        self, status: int, reason: str, timestamp: int | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(reason)
        self.status, self.reason, self.timestamp, self.retry_after = status, reason, timestamp, retry_after


def _random_id(length: int = 10) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _write_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 it issued: (ca, cert, key) files."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "APNs test peer CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_file, cert_file, key_file


class ApnsPeer:
    """Apple's provider API on https://127.0.0.1 (HTTP/2 only). Use as a context manager or
    call start()/stop()."""

    def __init__(self) -> None:
        self.key_id = _random_id()
        self.team_id = _random_id()
        self._signing_key = ec.generate_private_key(ec.SECP256R1())
        self._cond = threading.Condition()
        self._devices: dict[str, str] = {}
        self._gone: dict[str, int] = {}
        self._faults: list[_Fault] = []
        self._notifications: list[ApnsNotification] = []
        self._provider_tokens: list[str] = []
        #: (status, reason) of every refused request, in order.
        self.refusals: list[tuple[int, str]] = []
        #: Seconds each request waits before it is answered (timeout tests).
        self.delay = 0.0
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._serving = threading.Event()
        self._failure: BaseException | None = None
        self._port = 0
        self.ca_file = ""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ApnsPeer:
        self._tmp = tempfile.TemporaryDirectory(prefix="apns-peer-")
        ca_file, cert_file, key_file = _write_certificates(Path(self._tmp.name))
        self.ca_file = str(ca_file)
        # Bound (and listening) here, so the port is known before the server thread runs and
        # no other process can take it in between; hypercorn serves the inherited socket.
        listener = socket.create_server(("127.0.0.1", 0))
        self._port = int(listener.getsockname()[1])
        config = Config()
        config.bind = [f"fd://{listener.detach()}"]
        config.certfile, config.keyfile = str(cert_file), str(key_file)
        config.alpn_protocols = ["h2"]
        config.accesslog = None
        config.errorlog = log
        config.graceful_timeout = 1.0
        self._thread = threading.Thread(target=self._run, args=(config,), name="apns-peer")
        self._thread.start()
        if not self._serving.wait(timeout=10) or self._failure is not None:
            self.stop()
            raise RuntimeError("the APNs peer did not start") from self._failure
        return self

    def stop(self) -> None:
        if self._thread is not None:
            if self._loop is not None and self._stopping is not None:
                self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout=10)
            self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ApnsPeer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self, config: Config) -> None:
        try:
            asyncio.run(self._serve(config))
        except BaseException as exc:  # reported by start(), or visible in the test's failure
            self._failure = exc
            self._serving.set()

    async def _serve(self, config: Config) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        await serve(self._app, config, shutdown_trigger=self._stopping.wait, mode="asgi")  # type: ignore[arg-type]

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self._port}"

    # -- what tests set up -------------------------------------------------------------------

    def reset(self) -> None:
        """Forget what was sent and refused, faults and the delay (between tests sharing one
        peer); the signing key and registered devices stay."""
        with self._cond:
            self._notifications.clear()
            self._provider_tokens.clear()
            self.refusals.clear()
            self._faults.clear()
            self.delay = 0.0

    def signing_key(self) -> str:
        """The token signing key as Apple hands it out (a PKCS #8 PEM, the ``.p8`` file)."""
        return self._signing_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    def register(self, bundle_id: str = DEFAULT_BUNDLE_ID) -> str:
        """A new device token of an app ``bundle_id`` (64 hex digits, as Apple's are)."""
        token = secrets.token_hex(32)
        with self._cond:
            self._devices[token] = bundle_id
        return token

    def unregister(self, token: str) -> None:
        """The app was removed from the device: the token answers 410 Unregistered."""
        with self._cond:
            self._gone[token] = int(time.time() * 1000)

    def fail_next(
        self,
        status: int,
        reason: str,
        *,
        times: int | None = 1,
        retry_after: int | None = None,
        timestamp: int | None = None,
    ) -> None:
        """Answer the next ``times`` authorized requests (None: all) with ``reason``."""
        with self._cond:
            self._faults.append(_Fault(status, reason, retry_after, timestamp, times))

    # -- what tests read ---------------------------------------------------------------------

    @property
    def notifications(self) -> list[ApnsNotification]:
        with self._cond:
            return list(self._notifications)

    @property
    def provider_tokens(self) -> list[str]:
        """Every distinct provider token that passed verification, in the order first seen."""
        with self._cond:
            return list(self._provider_tokens)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ApnsNotification]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._notifications) >= count, timeout=timeout):
                got = len(self._notifications)
                raise AssertionError(f"APNs peer got {got} of {count} notifications in {timeout}s")
            return list(self._notifications)

    # -- the API -----------------------------------------------------------------------------

    async def _app(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        if self.delay and self._stopping is not None:
            # Woken early by stop(), so a slow answer never holds the shutdown.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.delay)
        headers: dict[str, str] = {}
        duplicated = False
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            duplicated |= name in headers and name.startswith(("apns-", "authorization"))
            headers[name] = raw_value.decode("latin-1")
        apns_id = headers.get("apns-id") or str(uuid.uuid4()).upper()
        try:
            if duplicated:
                raise _Refusal(400, "DuplicateHeaders")
            notification = self._check(scope, headers, body, apns_id)
        except _Refusal as refusal:
            with self._cond:
                self.refusals.append((refusal.status, refusal.reason))
            document: dict[str, Any] = {"reason": refusal.reason}
            if refusal.timestamp is not None:
                document["timestamp"] = refusal.timestamp
            extra = [(b"retry-after", str(refusal.retry_after).encode())] if refusal.retry_after else []
            await _answer(send, refusal.status, apns_id, json.dumps(document).encode(), extra)
            return
        with self._cond:
            self._notifications.append(notification)
            self._cond.notify_all()
        await _answer(send, 200, apns_id, b"")

    async def _lifespan(self, receive: ASGIReceive, send: ASGISend) -> None:
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
                # The listening socket already accepts connections; they are served as soon
                # as hypercorn's accept loop runs.
                self._serving.set()
            elif event["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _check(
        self, scope: dict[str, Any], headers: dict[str, str], body: bytes, apns_id: str
    ) -> ApnsNotification:
        """The notification as accepted, or the _Refusal Apple would answer, in Apple's order
        of checks: the request line, the provider token, then the notification."""
        if scope.get("http_version") != "2":
            # TLS lets a client that offered no h2 go on without ALPN, and hypercorn then
            # speaks HTTP/1.1 with it: refused here, since Apple would not answer it.
            raise _Refusal(400, "BadProtocol")
        if scope["method"] != "POST":
            raise _Refusal(405, "MethodNotAllowed")
        matched = DEVICE_PATH.fullmatch(scope["path"])
        if matched is None:
            raise _Refusal(404, "BadPath")
        token = matched["token"]
        if not token:
            raise _Refusal(400, "MissingDeviceToken")
        provider_token = self._verify_provider_token(headers.get("authorization"))
        with self._cond:
            fault = take_next(self._faults)
        if fault is not None:
            raise _Refusal(fault.status, fault.reason, fault.timestamp, fault.retry_after)
        self._check_headers(headers, apns_id)
        if not DEVICE_TOKEN.fullmatch(token):
            raise _Refusal(400, "BadDeviceToken")
        with self._cond:
            bundle_id, gone_at = self._devices.get(token), self._gone.get(token)
        if bundle_id is None:
            raise _Refusal(400, "BadDeviceToken")
        if headers["apns-topic"] != bundle_id:
            raise _Refusal(400, "DeviceTokenNotForTopic")
        if gone_at is not None:
            raise _Refusal(410, "Unregistered", timestamp=gone_at)
        payload = _check_payload(body)
        return ApnsNotification(
            device_token=token,
            apns_id=apns_id,
            headers=headers,
            payload=payload,
            http_version=str(scope.get("http_version")),
            provider_token=provider_token,
        )

    def _verify_provider_token(self, authorization: str | None) -> str:
        if not authorization:
            raise _Refusal(403, "MissingProviderToken")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _Refusal(403, "MissingProviderToken")
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != "ES256" or header.get("kid") != self.key_id:
                raise _Refusal(403, "InvalidProviderToken")
            claims = jwt.decode(
                token,
                self._signing_key.public_key(),
                algorithms=["ES256"],
                options={"require": ["iss", "iat"], "verify_iat": False},
            )
        except jwt.PyJWTError:
            raise _Refusal(403, "InvalidProviderToken") from None
        iat = claims["iat"]
        if claims["iss"] != self.team_id or not isinstance(iat, int) or iat > time.time() + CLOCK_SKEW_S:
            raise _Refusal(403, "InvalidProviderToken")
        if time.time() - iat > PROVIDER_TOKEN_MAX_AGE_S:
            raise _Refusal(403, "ExpiredProviderToken")
        with self._cond:
            if token not in self._provider_tokens:
                self._provider_tokens.append(token)
        return token

    @staticmethod
    def _check_headers(headers: dict[str, str], apns_id: str) -> None:
        if not headers.get("apns-topic"):
            raise _Refusal(400, "MissingTopic")
        if headers.get("apns-push-type", "alert") not in PUSH_TYPES:
            raise _Refusal(400, "InvalidPushType")
        if headers.get("apns-priority", "10") not in PRIORITIES:
            raise _Refusal(400, "BadPriority")
        expiration = headers.get("apns-expiration")
        if expiration is not None and not expiration.isdigit():
            raise _Refusal(400, "BadExpirationDate")
        if "apns-id" in headers and not APNS_ID.fullmatch(apns_id):
            raise _Refusal(400, "BadMessageId")
        collapse = headers.get("apns-collapse-id")
        if collapse is not None and len(collapse.encode()) > 64:
            raise _Refusal(400, "BadCollapseId")


def _check_payload(body: bytes) -> dict[str, Any]:
    if not body:
        raise _Refusal(400, "PayloadEmpty")
    if len(body) > PAYLOAD_MAX_BYTES:
        raise _Refusal(413, "PayloadTooLarge")
    try:
        payload = json.loads(body)
    except ValueError:
        raise _Refusal(400, "BadPayload") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
        raise _Refusal(400, "BadPayload")
    return payload


async def _read_body(receive: ASGIReceive) -> bytes:
    chunks: list[bytes] = []
    while True:
        event = await receive()
        if event["type"] != "http.request":
            break
        chunks.append(event.get("body", b""))
        if not event.get("more_body"):
            break
    return b"".join(chunks)


async def _answer(
    send: ASGISend, status: int, apns_id: str, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"apns-id", apns_id.encode())]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})
