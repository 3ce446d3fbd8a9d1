"""Push to Android (and any Firebase app) through Firebase Cloud Messaging's HTTP v1 API.

Protocol choices:

- **The HTTP v1 API** (``POST {FCM_API_BASE}/v1/projects/{project}/messages:send``), the one
  Google keeps: the legacy server-key API is shut down. One message per request (v1 has no
  multicast); many requests share one pooled ``httpx.AsyncClient`` per event loop, HTTP/2
  where the server offers it.
- **OAuth 2.0 for service accounts** (RFC 7523), done here rather than with google-auth,
  whose transports are synchronous: a JWT signed RS256 with the account's ``private_key``
  (``iss`` the account's ``client_email``, ``aud`` its ``token_uri``, ``scope`` Firebase
  messaging, one hour long) is exchanged at ``token_uri`` for an access token. The access
  token is cached until :data:`REFRESH_MARGIN_S` before ``expires_in`` runs out; one
  coroutine refreshes it while the others wait (an ``asyncio.Lock``), so a burst of messages
  costs one exchange. A 401 from the API (the token was revoked, or expired early) refreshes
  it once more and repeats the request; a second 401 is ``fcm_unauthorized``.
- **One deadline per attempt**, PUSH_TIMEOUT, around everything the attempt does: the token
  exchange when one is due, the request and its repetition after a 401.

The message carries the notification (title, body), ``data`` (the payload's data and its
URL: strings only, FCM's rule), and the options of each platform FCM relays to: ``android``
(priority HIGH for ``high`` urgency, else NORMAL; ``ttl``; ``collapse_key`` from the topic),
``apns`` (the same headers the APNs provider sends) and ``webpush`` (RFC 8030 ``Urgency``,
``TTL`` and ``Topic``, the icon, the URL to open). Errors are Google's JSON document, read by
:func:`answer_error`: its FcmError ``errorCode`` decides, and a token FCM no longer knows
(UNREGISTERED, SENDER_ID_MISMATCH, an INVALID_ARGUMENT about the token) is
:class:`~shared.errors.TargetGone`, to be pruned.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.config import Settings
from shared.errors import (
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    TargetGone,
    TemporaryDeliveryError,
)
from shared.payloads import PushPayload, PushTarget
from workers.providers.apns import (
    TOKEN_GONE,
    collapse_id,
    described_without,
    expiration,
    priority,
    token_hint,
)
from workers.providers.base import Outgoing, SendResult
from workers.providers.http import parse_retry_after

PROVIDER = "fcm"

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Google's longest assertion lifetime.
ASSERTION_LIFETIME_S = 3600
#: An access token is replaced this long before it expires (at most half its lifetime), so
#: that no request leaves with a token that runs out on the way.
REFRESH_MARGIN_S = 300.0

#: The ``@type`` of the detail carrying FCM's own error code.
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"

#: Data keys FCM refuses (the whole message fails with INVALID_ARGUMENT).
RESERVED_DATA_KEYS = frozenset({"from", "notification", "message_type"})
RESERVED_DATA_PREFIXES = ("google", "gcm")

#: RFC 8030's Topic: at most 32 characters of the URL-safe base64 alphabet.
WEB_PUSH_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")

UNAUTHORIZED = "fcm_unauthorized"
#: FCM codes that say the token (or its app) is gone for this sender.
GONE_CODES = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})
#: FCM codes that say our credentials, or the APNs/web push credentials FCM holds for the
#: app, are wrong: the message is fine and waits for a fix.
CREDENTIAL_CODES = frozenset({"UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR", "PERMISSION_DENIED"})
TEMPORARY_CODES = frozenset({"QUOTA_EXCEEDED", "RESOURCE_EXHAUSTED", "UNAVAILABLE", "INTERNAL"})


def build_message(payload: PushPayload, token: str, now: float) -> dict[str, Any]:
    """The v1 ``message`` for one device token. Raises PermanentDeliveryError for data FCM
    refuses."""
    android: dict[str, Any] = {"priority": "HIGH" if payload.urgency == "high" else "NORMAL"}
    apns_headers = {"apns-priority": priority(payload.urgency)}
    webpush_headers = {"Urgency": payload.urgency}
    if payload.ttl is not None:
        android["ttl"] = f"{payload.ttl}s"
        apns_headers["apns-expiration"] = str(expiration(payload.ttl, now))
        webpush_headers["TTL"] = str(payload.ttl)
    if payload.topic:
        android["collapse_key"] = apns_headers["apns-collapse-id"] = collapse_id(payload.topic)
        webpush_headers["Topic"] = web_push_topic(payload.topic)
    webpush: dict[str, Any] = {"headers": webpush_headers}
    if payload.icon:
        webpush["notification"] = {"icon": payload.icon}
    if payload.url and payload.url.startswith("https://"):
        webpush["fcm_options"] = {"link": payload.url}  # FCM accepts HTTPS links only
    message: dict[str, Any] = {
        "token": token,
        "notification": {"title": payload.title, "body": payload.body},
        "android": android,
        "apns": {"headers": apns_headers},
        "webpush": webpush,
    }
    if data := message_data(payload):
        message["data"] = data
    return message


def message_data(payload: PushPayload) -> dict[str, str]:
    """The payload's data and URL as FCM's string map, refusing the keys FCM reserves."""
    data = {str(key): str(value) for key, value in payload.data.items()}
    if payload.url:
        data["url"] = payload.url
    for key in data:
        if key in RESERVED_DATA_KEYS or key.lower().startswith(RESERVED_DATA_PREFIXES):
            raise PermanentDeliveryError(f"FCM reserves the data key {key!r}", code="fcm_reserved_data_key")
    return data


def web_push_topic(topic: str) -> str:
    """The topic as RFC 8030 allows it, else a digest that does (the same topic, the same
    digest, so replacing still works)."""
    if WEB_PUSH_TOPIC.fullmatch(topic):
        return topic
    return base64.urlsafe_b64encode(hashlib.sha256(topic.encode()).digest()).decode()[:32]


def answer_error(response: httpx.Response, device_token: str) -> DeliveryError:
    """The delivery error for an answer of the send API other than 200."""
    status = response.status_code
    error = _error_of(response)
    code = fcm_error_code(error) or str(error.get("status") or "") or f"HTTP_{status}"
    text = f"FCM HTTP {status} {code}: {_redacted(str(error.get('message') or ''), device_token)}"
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if code in GONE_CODES or (code == "INVALID_ARGUMENT" and _names_the_token(error)):
        return TargetGone(f"{text} (token {token_hint(device_token)})", code=TOKEN_GONE)
    if status in (401, 403) or code in CREDENTIAL_CODES:
        return TemporaryDeliveryError(text, code=UNAUTHORIZED)
    if status in (408, 429) or status >= 500 or code in TEMPORARY_CODES:
        return TemporaryDeliveryError(text, code=f"fcm_{code.lower()}", retry_after_ms=retry_after)
    return PermanentDeliveryError(text, code=f"fcm_{code.lower()}")


def fcm_error_code(error: Mapping[str, Any]) -> str | None:
    """FCM's own ``errorCode`` among the error's details (UNREGISTERED, QUOTA_EXCEEDED …)."""
    for detail in _details(error):
        if detail.get("@type") == FCM_ERROR_TYPE and isinstance(detail.get("errorCode"), str):
            return str(detail["errorCode"])
    return None


def classify(exc: BaseException, device_token: str = "") -> DeliveryError:
    """A transport failure (no answer) as a delivery error: always temporary."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return TemporaryDeliveryError("FCM did not answer in time", code="fcm_timeout")
    described = described_without(exc, device_token)
    if isinstance(exc, httpx.HTTPError | OSError):
        return TemporaryDeliveryError(f"FCM request failed: {described}", code="fcm_connection")
    return TemporaryDeliveryError(f"FCM failed unexpectedly: {described}", code="fcm_error")


def _error_of(response: httpx.Response) -> dict[str, Any]:
    """Google's ``error`` object, or an empty one for an answer without it (a proxy's page)."""
    try:
        document = json.loads(response.content)
    except ValueError:
        return {}
    error = document.get("error") if isinstance(document, dict) else None
    return error if isinstance(error, dict) else {}


def _details(error: Mapping[str, Any]) -> list[dict[str, Any]]:
    details = error.get("details")
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _names_the_token(error: Mapping[str, Any]) -> bool:
    """Whether an INVALID_ARGUMENT is about the registration token (the token is malformed
    or was never valid) rather than about the message."""
    for detail in _details(error):
        if detail.get("@type") == BAD_REQUEST_TYPE:
            violations = detail.get("fieldViolations")
            if isinstance(violations, list) and any(
                isinstance(v, dict) and v.get("field") == "message.token" for v in violations
            ):
                return True
    text = str(error.get("message") or "").lower()
    return "registration token" in text and ("not a valid" in text or "invalid" in text)


def _redacted(text: str, token: str) -> str:
    return text.replace(token, token_hint(token)) if token else text


def _private_key(account: Mapping[str, Any]) -> rsa.RSAPrivateKey:
    refused = ConfigError("FCM_SERVICE_ACCOUNT's private_key must be the account's PEM RSA key")
    try:
        key = serialization.load_pem_private_key(str(account.get("private_key")).encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise refused from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise refused
    return key


@dataclass(frozen=True, slots=True)
class _AccessToken:
    value: str
    #: When to stop using it, on the provider's clock.
    renew_at: float


class FcmProvider:
    """Send notifications through FCM with a service account's credentials."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        push = settings.push
        account = push.fcm_service_account
        if account is None:
            raise ConfigError("FCM_SERVICE_ACCOUNT must be set to send through FCM")
        if not push.fcm_project_id:
            raise ConfigError("FCM_PROJECT_ID must be set (the service account names no project_id)")
        if not account.get("client_email"):
            raise ConfigError("FCM_SERVICE_ACCOUNT lacks client_email")
        self._key = _private_key(account)
        self._key_id = account.get("private_key_id") or None
        self._client_email = str(account["client_email"])
        self._token_uri = str(account.get("token_uri") or DEFAULT_TOKEN_URI)
        self._send_url = f"{push.fcm_api_base}/v1/projects/{push.fcm_project_id}/messages:send"
        self._timeout_s = push.timeout_ms / 1000
        #: Wall-clock time (assertion ``iat``, token expiry); replaceable so tests need not wait.
        self._clock = clock
        self._token: _AccessToken | None = None
        self._client_of: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient, asyncio.Lock] | None = None

    async def send(self, message: Outgoing[PushPayload], target: PushTarget) -> SendResult:
        body = {"message": build_message(message.payload, target.token, self._clock())}
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._post(body)
        except Exception as exc:
            raise classify(exc, target.token) from exc
        if response.status_code == 200:
            name = _name_of(response)
            return SendResult(provider_message_id=name, delivered=False, provider=PROVIDER)
        raise answer_error(response, target.token)

    async def _post(self, body: dict[str, Any]) -> httpx.Response:
        """The send request; repeated once with a new access token after a 401."""
        token = await self._access_token()
        response = await self._send(body, token)
        if response.status_code == 401 and fcm_error_code(_error_of(response)) != "THIRD_PARTY_AUTH_ERROR":
            # Our token was refused (revoked, or expired before we expected): one new one.
            # THIRD_PARTY_AUTH_ERROR is about the app's APNs/web credentials, not ours.
            token = await self._access_token(refused=token)
            response = await self._send(body, token)
        return response

    async def _send(self, body: dict[str, Any], token: str) -> httpx.Response:
        return await self._client().post(
            self._send_url, json=body, headers={"authorization": f"Bearer {token}"}
        )

    async def _access_token(self, refused: str | None = None) -> str:
        """A valid access token: the cached one, or a new one from one exchange that every
        waiting coroutine shares. ``refused`` is a token the API turned down."""
        cached = self._usable(refused)
        if cached is not None:
            return cached
        async with self._lock():
            cached = self._usable(refused)  # another coroutine may have refreshed meanwhile
            if cached is not None:
                return cached
            self._token = await self._exchange()
            return self._token.value

    def _usable(self, refused: str | None) -> str | None:
        token = self._token
        if token is None or token.value == refused or self._clock() >= token.renew_at:
            return None
        return token.value

    async def _exchange(self) -> _AccessToken:
        """Trade a signed assertion for an access token at the account's token_uri."""
        issued = self._clock()
        response = await self._client().post(
            self._token_uri,
            data={"grant_type": JWT_BEARER, "assertion": self._assertion(issued)},
        )
        try:
            document = response.json()
        except ValueError:
            document = None
        if response.status_code != 200 or not isinstance(document, dict):
            raise _exchange_error(response.status_code, document)
        value, lifetime = document.get("access_token"), document.get("expires_in")
        if not isinstance(value, str) or not value:
            raise TemporaryDeliveryError("Google's token endpoint gave no access token", code=UNAUTHORIZED)
        # A missing or odd expires_in: assume the usual hour.
        seconds = float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else 3600.0
        return _AccessToken(value, issued + seconds - min(REFRESH_MARGIN_S, seconds / 2))

    def _assertion(self, issued: float) -> str:
        now = int(issued)
        claims = {
            "iss": self._client_email,
            "scope": FCM_SCOPE,
            "aud": self._token_uri,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_S,
        }
        headers = {"kid": self._key_id} if self._key_id else None
        return jwt.encode(claims, self._key, algorithm="RS256", headers=headers)

    def _client(self) -> httpx.AsyncClient:
        """The running loop's client, made at its first message."""
        return self._loop_state()[1]

    def _lock(self) -> asyncio.Lock:
        """The running loop's refresh lock (an asyncio.Lock belongs to one loop)."""
        return self._loop_state()[2]

    def _loop_state(self) -> tuple[asyncio.AbstractEventLoop, httpx.AsyncClient, asyncio.Lock]:
        loop = asyncio.get_running_loop()
        if self._client_of is None or self._client_of[0] is not loop:
            # The settings say where requests go (tests, relays), not proxy variables.
            client = httpx.AsyncClient(http2=True, timeout=httpx.Timeout(self._timeout_s), trust_env=False)
            self._client_of = (loop, client, asyncio.Lock())
        return self._client_of

    async def close(self) -> None:
        """Close the loop's pooled connections."""
        held, self._client_of = self._client_of, None
        if held is not None and held[0] is asyncio.get_running_loop():
            await held[1].aclose()


def _name_of(response: httpx.Response) -> str | None:
    try:
        name = response.json().get("name")
    except (ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def _exchange_error(status: int, document: Any) -> TemporaryDeliveryError:
    """A refused or failed token exchange: temporary either way, since no message is wrong."""
    described = ""
    if isinstance(document, dict):
        described = ": " + " - ".join(
            str(document[key]) for key in ("error", "error_description") if document.get(key)
        )
    text = f"Google's token endpoint answered HTTP {status}{described}"
    if 400 <= status < 500:
        # invalid_grant and friends: a wrong or revoked key, a wrong account, a skewed clock.
        return TemporaryDeliveryError(text, code=UNAUTHORIZED)
    return TemporaryDeliveryError(text, code="fcm_oauth_unavailable")
