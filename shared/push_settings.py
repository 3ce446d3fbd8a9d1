"""Credentials and addresses of the push services (the ``push`` channel).

Each service is optional: a push target whose service is not configured fails with a clear
error rather than being silently dropped, and with none configured the embedded default
writes what it would send to ``var/outbox/``.

- Web push (RFC 8030/8291/8292): ``VAPID_PRIVATE_KEY`` (the raw P-256 key, base64url, as
  ``kai-messaging vapid-keys`` prints it, or a PEM) and ``VAPID_SUBJECT`` (``mailto:`` or
  ``https:`` contact the push services may use).
- Firebase Cloud Messaging HTTP v1: ``FCM_SERVICE_ACCOUNT`` (the service account's JSON key,
  or the path of its file); ``FCM_PROJECT_ID`` defaults to the key's ``project_id``;
  ``FCM_API_BASE`` points elsewhere than ``https://fcm.googleapis.com`` (tests, proxies).
- Apple Push Notification service: ``APNS_KEY`` (the ``.p8`` signing key or its path),
  ``APNS_KEY_ID``, ``APNS_TEAM_ID``, ``APNS_TOPIC`` (the app's bundle id, used when a device
  names no app of its own), ``APNS_API_BASE`` (``https://api.sandbox.push.apple.com`` for
  development builds) and ``APNS_CA_FILE`` (a private CA, for a relay or a test peer).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from shared.envvars import int_setting
from shared.errors import ConfigError

DEFAULT_PUSH_TIMEOUT_MS = 10_000
DEFAULT_FCM_API_BASE = "https://fcm.googleapis.com"
DEFAULT_APNS_API_BASE = "https://api.push.apple.com"


def load_vapid_private_key(text: str) -> ec.EllipticCurvePrivateKey:
    """VAPID_PRIVATE_KEY as a key: a PEM, or the raw 32-byte P-256 scalar in base64url (what
    ``kai-messaging vapid-keys`` and most web push tooling print)."""
    try:
        if text.lstrip().startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            raw = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
            if len(raw) != 32:
                raise ValueError("not 32 bytes")
            key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"VAPID_PRIVATE_KEY is not a P-256 private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError("VAPID_PRIVATE_KEY must be a P-256 (prime256v1) key")
    return key


def _file_or_text(name: str, raw: str | None) -> str | None:
    """A secret given inline or as the path of a file holding it."""
    if not raw:
        return None
    text = raw.strip()
    if text.startswith(("{", "-----BEGIN")) or "\n" in text:
        return text
    path = Path(text)
    if path.is_file():
        return path.read_text()
    if "/" in text or text.endswith((".json", ".p8", ".pem")):
        raise ConfigError(f"{name} names a file that does not exist: {text}")
    return text


@dataclass(frozen=True)
class PushSettings:
    vapid_private_key: str | None = field(default=None, repr=False)
    vapid_subject: str | None = None
    #: The service account's JSON key, parsed (``client_email``, ``private_key``, ``token_uri`` …).
    fcm_service_account: dict[str, Any] | None = field(default=None, repr=False)
    fcm_project_id: str | None = None
    fcm_api_base: str = DEFAULT_FCM_API_BASE
    apns_key: str | None = field(default=None, repr=False)
    apns_key_id: str | None = None
    apns_team_id: str | None = None
    apns_topic: str | None = None
    apns_api_base: str = DEFAULT_APNS_API_BASE
    apns_ca_file: str | None = None
    timeout_ms: int = DEFAULT_PUSH_TIMEOUT_MS

    @property
    def web_push(self) -> bool:
        return bool(self.vapid_private_key and self.vapid_subject)

    @property
    def fcm(self) -> bool:
        return self.fcm_service_account is not None

    @property
    def apns(self) -> bool:
        return bool(self.apns_key and self.apns_key_id and self.apns_team_id)

    @property
    def any(self) -> bool:
        return self.web_push or self.fcm or self.apns

    def vapid_public_key(self) -> str | None:
        """The public half of VAPID_PRIVATE_KEY as browsers take it (``applicationServerKey``:
        the uncompressed P-256 point, base64url without padding); None without web push."""
        if not self.vapid_private_key:
            return None
        key = load_vapid_private_key(self.vapid_private_key)
        point = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return base64.urlsafe_b64encode(point).rstrip(b"=").decode()

    @classmethod
    def from_env(cls, get: Callable[[str], str | None]) -> PushSettings:
        vapid_key, vapid_subject = get("VAPID_PRIVATE_KEY"), get("VAPID_SUBJECT")
        if bool(vapid_key) != bool(vapid_subject):
            raise ConfigError("VAPID_PRIVATE_KEY and VAPID_SUBJECT are set together (web push needs both)")
        if vapid_subject and not vapid_subject.startswith(("mailto:", "https:")):
            raise ConfigError(f"VAPID_SUBJECT must be a mailto: or https: URL, got {vapid_subject!r}")
        if vapid_key:
            load_vapid_private_key(vapid_key)  # refuse a malformed key at start-up, not per message
        account: dict[str, Any] | None = None
        if raw := _file_or_text("FCM_SERVICE_ACCOUNT", get("FCM_SERVICE_ACCOUNT")):
            try:
                account = json.loads(raw)
            except ValueError:
                raise ConfigError("FCM_SERVICE_ACCOUNT must be a service account's JSON key") from None
            missing = [
                k
                for k in ("client_email", "private_key")
                if not isinstance(account, dict) or not account.get(k)
            ]
            if missing:
                raise ConfigError(f"FCM_SERVICE_ACCOUNT lacks {', '.join(missing)}")
        project = get("FCM_PROJECT_ID") or (account or {}).get("project_id")
        if account is not None and not project:
            raise ConfigError("FCM_PROJECT_ID must be set (the service account names no project_id)")
        apns_key = _file_or_text("APNS_KEY", get("APNS_KEY"))
        apns_parts = {
            "APNS_KEY": apns_key,
            "APNS_KEY_ID": get("APNS_KEY_ID"),
            "APNS_TEAM_ID": get("APNS_TEAM_ID"),
        }
        if any(apns_parts.values()) and not all(apns_parts.values()):
            unset = ", ".join(name for name, value in apns_parts.items() if not value)
            raise ConfigError(f"APNs needs APNS_KEY, APNS_KEY_ID and APNS_TEAM_ID together ({unset} unset)")
        return cls(
            vapid_private_key=vapid_key or None,
            vapid_subject=vapid_subject or None,
            fcm_service_account=account,
            fcm_project_id=project,
            fcm_api_base=(get("FCM_API_BASE") or DEFAULT_FCM_API_BASE).rstrip("/"),
            apns_key=apns_key,
            apns_key_id=get("APNS_KEY_ID") or None,
            apns_team_id=get("APNS_TEAM_ID") or None,
            apns_topic=get("APNS_TOPIC") or None,
            apns_api_base=(get("APNS_API_BASE") or DEFAULT_APNS_API_BASE).rstrip("/"),
            apns_ca_file=get("APNS_CA_FILE") or None,
            timeout_ms=int_setting(get, "PUSH_TIMEOUT", DEFAULT_PUSH_TIMEOUT_MS, minimum=1),
        )
