"""A local stand-in for Firebase Cloud Messaging's HTTP v1 API and Google's OAuth2 token
endpoint, checking what they check.

``POST /token`` is the service-account flow of RFC 7523: the form's ``assertion`` is a JWT
whose RS256 signature is verified with the public half of a key :meth:`FcmPeer.service_account`
handed out, and whose ``iss`` (the account's ``client_email``), ``aud`` (this endpoint),
``scope`` (Firebase messaging) and lifetime (``exp - iat`` at most an hour) must be right.
It answers an opaque access token with ``expires_in``, or Google's ``invalid_grant``.

``POST /v1/projects/{project}/messages:send`` needs one of those access tokens, still valid
(:meth:`expire_tokens` makes every issued token answer 401 UNAUTHENTICATED), for the peer's
project, and a message of the documented shape: exactly one of token/topic/condition, string
``data`` values and no reserved data keys, ``android.priority`` NORMAL or HIGH,
``android.ttl`` a protobuf Duration (``"3600s"``), no field the API does not know. Devices
are :meth:`register`-ed; a token marked gone answers 404 UNREGISTERED, a token of another
project 403 SENDER_ID_MISMATCH, an unknown one 400 INVALID_ARGUMENT. Every refusal is
Google's error document (``{"error": {"code", "message", "status", "details"}}``);
``fail_next`` programs 429/500/503/400 answers.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.sinks.faults import take_next
from tests.sinks.http_server import HttpSink, QuietServer

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_MAX_LIFETIME_S = 3600
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
SEND_PATH = re.compile(r"/v1/projects/(?P<project>[^/]+)/messages:send")
DURATION = re.compile(r"\d+(\.\d{1,9})?s")

TARGET_FIELDS = ("token", "topic", "condition")
MESSAGE_FIELDS = frozenset(
    {"name", "data", "notification", "android", "webpush", "apns", "fcm_options", *TARGET_FIELDS}
)
NOTIFICATION_FIELDS = frozenset({"title", "body", "image"})
ANDROID_FIELDS = frozenset(
    {
        "collapse_key",
        "priority",
        "ttl",
        "restricted_package_name",
        "data",
        "notification",
        "fcm_options",
        "direct_boot_ok",
    }
)
APNS_FIELDS = frozenset({"headers", "payload", "fcm_options", "live_activity_token"})
WEBPUSH_FIELDS = frozenset({"headers", "data", "notification", "fcm_options"})
RESERVED_DATA_KEYS = frozenset({"from", "notification", "message_type"})
RESERVED_DATA_PREFIXES = ("google", "gcm")

UNAUTHENTICATED_TEXT = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
    "or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
INVALID_TOKEN_TEXT = "The registration token is not a valid FCM registration token"


@dataclass
class _Fault:
    status: int
    status_name: str
    message: str
    error_code: str | None
    retry_after: int | None
    remaining: int | None  # None: forever


@dataclass(frozen=True)
class FcmMessage:
    """One message the peer accepted."""

    name: str
    project_id: str
    #: The request's ``message`` object as sent.
    message: dict[str, Any]
    access_token: str


class Refusal(Exception):
    """A refused request: Google's error document (``document()``) and status."""

    def __init__(
        self,
        status: int,
        status_name: str,
        message: str,
        *,
        error_code: str | None = None,
        field: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.status_name, self.message = status, status_name, message
        self.error_code, self.field, self.retry_after = error_code, field, retry_after

    def document(self) -> dict[str, Any]:
        details: list[dict[str, Any]] = []
        if self.error_code is not None:
            details.append({"@type": FCM_ERROR, "errorCode": self.error_code})
        if self.field is not None:
            details.append(
                {
                    "@type": BAD_REQUEST,
                    "fieldViolations": [{"field": self.field, "description": self.message}],
                }
            )
        error: dict[str, Any] = {"code": self.status, "message": self.message, "status": self.status_name}
        if details:
            error["details"] = details
        return {"error": error}


def _invalid(message: str, field: str | None = None) -> Refusal:
    return Refusal(400, "INVALID_ARGUMENT", message, error_code="INVALID_ARGUMENT", field=field)


def _unknown_fields(value: dict[str, Any], known: frozenset[str], where: str) -> None:
    for name in value:
        if name not in known:
            text = f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': Cannot find field."
            raise _invalid(text, where)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(f"Invalid value at '{where}': expected an object", where)
    return value


def _string_map(value: Any, where: str) -> dict[str, str]:
    mapping = _object(value, where)
    for index, item in enumerate(mapping.values()):
        if not isinstance(item, str):
            raise _invalid(f"Invalid value at '{where}[{index}].value' (TYPE_STRING), {item!r}", where)
    return mapping


def check_message(request: Any) -> dict[str, Any]:
    """The ``message`` of a send request, or the Refusal the API answers for its shape."""
    _unknown_fields(_object(request, "request"), frozenset({"message", "validate_only"}), "request")
    message = _object(request.get("message"), "message")
    _unknown_fields(message, MESSAGE_FIELDS, "message")
    targets = [name for name in TARGET_FIELDS if message.get(name)]
    if not targets:
        raise _invalid("Recipient of the message is not set.", "message")
    if len(targets) > 1:
        raise _invalid(
            f"Invalid value at 'message' (oneof), oneof field 'target' is already set. "
            f"Cannot set '{targets[1]}'",
            "message",
        )
    if "data" in message:
        for key in _string_map(message["data"], "message.data"):
            if key in RESERVED_DATA_KEYS or key.lower().startswith(RESERVED_DATA_PREFIXES):
                raise _invalid(f"Invalid data payload key: {key}", "message.data")
    if "notification" in message:
        notification = _object(message["notification"], "message.notification")
        _unknown_fields(notification, NOTIFICATION_FIELDS, "message.notification")
        _string_map(notification, "message.notification")
    if "android" in message:
        _check_android(_object(message["android"], "message.android"))
    if "apns" in message:
        apns = _object(message["apns"], "message.apns")
        _unknown_fields(apns, APNS_FIELDS, "message.apns")
        _string_map(apns.get("headers", {}), "message.apns.headers")
    if "webpush" in message:
        _check_webpush(_object(message["webpush"], "message.webpush"))
    return message


def _check_android(android: dict[str, Any]) -> None:
    _unknown_fields(android, ANDROID_FIELDS, "message.android")
    priority = android.get("priority", "NORMAL")
    if priority not in ("NORMAL", "HIGH"):
        raise _invalid(
            "Invalid value at 'message.android.priority' "
            f"(type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), {priority!r}",
            "message.android.priority",
        )
    ttl = android.get("ttl")
    if ttl is not None and not (isinstance(ttl, str) and DURATION.fullmatch(ttl)):
        raise _invalid(
            "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), "
            "Illegal duration format; duration must end with 's'",
            "message.android.ttl",
        )
    if "collapse_key" in android and not isinstance(android["collapse_key"], str):
        raise _invalid("Invalid value at 'message.android.collapse_key' (TYPE_STRING)", "message.android")
    if "data" in android:
        _string_map(android["data"], "message.android.data")


def _check_webpush(webpush: dict[str, Any]) -> None:
    _unknown_fields(webpush, WEBPUSH_FIELDS, "message.webpush")
    _string_map(webpush.get("headers", {}), "message.webpush.headers")
    if "data" in webpush:
        _string_map(webpush["data"], "message.webpush.data")
    options = _object(webpush.get("fcm_options", {}), "message.webpush.fcm_options")
    link = options.get("link")
    if link is not None and not (isinstance(link, str) and link.startswith("https://")):
        raise _invalid("Invalid value at 'message.webpush.fcm_options.link': HTTPS is required", "link")


class _Handler(BaseHTTPRequestHandler):
    server: QuietServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def _answer(self, status: int, document: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        peer: FcmPeer = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        if path == "/token":
            status, document = peer._exchange(raw)
            self._answer(status, document)
            return
        matched = SEND_PATH.fullmatch(path)
        if matched is None:
            self._answer(404, Refusal(404, "NOT_FOUND", f"{path} was not found").document())
            return
        if peer.delay:
            self.server.stopping.wait(peer.delay)
        try:
            document = peer._send(matched["project"], self.headers.get("Authorization"), raw)
        except Refusal as refusal:
            extra = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after is not None else {}
            if refusal.status == 401:
                extra["WWW-Authenticate"] = 'Bearer realm="https://accounts.google.com/"'
            self._answer(refusal.status, refusal.document(), extra)
            return
        self._answer(200, document)


class FcmPeer(HttpSink):
    """FCM's HTTP v1 API and its token endpoint on 127.0.0.1. Use as a context manager or
    call start()/stop()."""

    handler = _Handler

    def __init__(self, project_id: str = "kai-test-project") -> None:
        self.project_id = project_id
        #: ``expires_in`` of the access tokens issued from now on, in seconds.
        self.token_lifetime = 3600
        #: Seconds each send waits before answering (timeout tests).
        self.delay = 0.0
        self._cond = threading.Condition()
        self._accounts: dict[str, rsa.RSAPublicKey] = {}
        self._access_tokens: dict[str, float] = {}
        self._devices: dict[str, str] = {}
        self._gone: set[str] = set()
        self._faults: list[_Fault] = []
        self._messages: list[FcmMessage] = []
        #: The verified claims of every accepted assertion, in order.
        self.assertions: list[dict[str, Any]] = []
        #: (status, FCM error code or status) of every refused send, in order.
        self.refusals: list[tuple[int, str]] = []

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    # -- what tests set up -------------------------------------------------------------------

    def reset(self) -> None:
        """Forget what was sent and refused, faults and changed settings (between tests
        sharing one peer); accounts, devices and issued tokens stay."""
        with self._cond:
            self._messages.clear()
            self.assertions.clear()
            self.refusals.clear()
            self._faults.clear()
            self.token_lifetime = 3600
            self.delay = 0.0

    def service_account(self) -> dict[str, Any]:
        """A new service account of the project: its JSON key file, as the Firebase console
        downloads it, with a fresh RSA key and ``token_uri`` pointing at this peer."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = f"firebase-adminsdk-{secrets.token_hex(3)}"
        email = f"{name}@{self.project_id}.iam.gserviceaccount.com"
        with self._cond:
            self._accounts[email] = key.public_key()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": secrets.token_hex(20),
            "private_key": pem,
            "client_email": email,
            "client_id": str(secrets.randbelow(10**21)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "universe_domain": "googleapis.com",
        }

    def register(self, project_id: str | None = None) -> str:
        """A new registration token of an app instance of ``project_id`` (this project's
        unless another is named: sending to it then answers SENDER_ID_MISMATCH)."""
        token = f"{secrets.token_urlsafe(16)[:22]}:APA91b{secrets.token_urlsafe(105)}"
        with self._cond:
            self._devices[token] = project_id or self.project_id
        return token

    def unregister(self, token: str) -> None:
        """The app was uninstalled: sends to ``token`` answer 404 UNREGISTERED."""
        with self._cond:
            self._gone.add(token)

    def expire_tokens(self) -> None:
        """Every access token issued so far expires now (the next send with one is a 401)."""
        with self._cond:
            self._access_tokens = dict.fromkeys(self._access_tokens, 0.0)

    def fail_next(
        self,
        status: int,
        status_name: str,
        message: str = "refused by test",
        *,
        error_code: str | None = None,
        retry_after: int | None = None,
        times: int | None = 1,
    ) -> None:
        """Answer the next ``times`` authorized sends (None: all) with Google's error document."""
        with self._cond:
            self._faults.append(_Fault(status, status_name, message, error_code, retry_after, times))

    # -- what tests read ---------------------------------------------------------------------

    @property
    def messages(self) -> list[FcmMessage]:
        with self._cond:
            return list(self._messages)

    @property
    def token_exchanges(self) -> int:
        with self._cond:
            return len(self.assertions)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[FcmMessage]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages) >= count, timeout=timeout):
                got = len(self._messages)
                raise AssertionError(f"FCM peer got {got} of {count} messages in {timeout}s")
            return list(self._messages)

    # -- the token endpoint ------------------------------------------------------------------

    def _exchange(self, raw: bytes) -> tuple[int, dict[str, Any]]:
        form = {key: values[-1] for key, values in parse_qs(raw.decode(errors="replace")).items()}
        if form.get("grant_type") != JWT_BEARER:
            text = f"Invalid grant_type: {form.get('grant_type')}"
            return 400, {"error": "unsupported_grant_type", "error_description": text}
        try:
            claims = self._verify_assertion(form.get("assertion", ""))
        except ValueError as exc:
            return 400, {"error": "invalid_grant", "error_description": str(exc)}
        if FCM_SCOPE not in str(claims.get("scope", "")).split():
            text = "Invalid OAuth scope or ID token audience provided."
            return 400, {"error": "invalid_scope", "error_description": text}
        access_token = "ya29." + secrets.token_urlsafe(48)
        with self._cond:
            self.assertions.append(claims)
            self._access_tokens[access_token] = time.time() + self.token_lifetime
            lifetime = self.token_lifetime
        return 200, {"access_token": access_token, "expires_in": lifetime, "token_type": "Bearer"}

    def _verify_assertion(self, assertion: str) -> dict[str, Any]:
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise ValueError("Invalid JWT: could not be decoded.") from None
        with self._cond:
            key = self._accounts.get(str(unverified.get("iss")))
        if key is None:
            raise ValueError("Invalid grant: account not found")
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion,
                key,
                algorithms=["RS256"],
                audience=self.token_uri,
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
                leeway=60,
            )
        except jwt.InvalidSignatureError:
            raise ValueError("Invalid JWT Signature.") from None
        except jwt.PyJWTError as exc:
            raise ValueError(f"Invalid JWT: {exc}") from None
        if not 0 < claims["exp"] - claims["iat"] <= ASSERTION_MAX_LIFETIME_S:
            raise ValueError(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
                "timeframe. Check your iat and exp values in the JWT claim."
            )
        return claims

    # -- the messages API --------------------------------------------------------------------

    def _send(self, project: str, authorization: str | None, raw: bytes) -> dict[str, Any]:
        try:
            access_token = self._authorize(project, authorization)
        except Refusal as refusal:
            self._refused(refusal)
            raise
        with self._cond:
            fault = take_next(self._faults)
        try:
            if fault is not None:
                raise Refusal(
                    fault.status,
                    fault.status_name,
                    fault.message,
                    error_code=fault.error_code,
                    retry_after=fault.retry_after,
                )
            try:
                request = json.loads(raw)
            except ValueError:
                raise _invalid("Invalid JSON payload received.") from None
            message = check_message(request)
            self._check_target(message)
        except Refusal as refusal:
            self._refused(refusal)
            raise
        name = f"projects/{project}/messages/{secrets.randbelow(10**16):016d}"
        if request.get("validate_only"):
            return {"name": f"projects/{project}/messages/fake_message_id"}
        with self._cond:
            self._messages.append(FcmMessage(name, project, message, access_token))
            self._cond.notify_all()
        return {"name": name}

    def _authorize(self, project: str, authorization: str | None) -> str:
        scheme, _, access_token = (authorization or "").partition(" ")
        with self._cond:
            expires = self._access_tokens.get(access_token) if scheme.lower() == "bearer" else None
        if expires is None or expires <= time.time():
            raise Refusal(401, "UNAUTHENTICATED", UNAUTHENTICATED_TEXT)
        if project != self.project_id:
            raise Refusal(
                403,
                "PERMISSION_DENIED",
                f"Permission 'cloudmessaging.messages.create' denied on resource "
                f"'//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist).",
            )
        return access_token

    def _check_target(self, message: dict[str, Any]) -> None:
        token = message.get("token")
        if token is None:
            return  # topics and conditions always exist
        with self._cond:
            project, gone = self._devices.get(token), token in self._gone
        if project is None:
            raise Refusal(400, "INVALID_ARGUMENT", INVALID_TOKEN_TEXT, error_code="INVALID_ARGUMENT")
        if project != self.project_id:
            raise Refusal(403, "PERMISSION_DENIED", "SenderId mismatch", error_code="SENDER_ID_MISMATCH")
        if gone:
            raise Refusal(404, "NOT_FOUND", "Requested entity was not found.", error_code="UNREGISTERED")

    def _refused(self, refusal: Refusal) -> None:
        with self._cond:
            self.refusals.append((refusal.status, refusal.error_code or refusal.status_name))
