"""Several providers per channel, in priority order: the brief's single-provider variables
name the first, ``EMAIL_FALLBACK_PROVIDERS`` / ``SMS_FALLBACK_PROVIDERS`` the ones tried after it.

Each fallback list is a JSON array (an environment variable holds one line, and JSON says
plainly which value is a port and which a password)::

    EMAIL_FALLBACK_PROVIDERS='[{"name": "relay-b", "host": "smtp.b.example", "port": 587,
                                "user": "kai", "password": "…", "secure": false}]'
    SMS_FALLBACK_PROVIDERS='[{"name": "twilio-eu", "accountSid": "AC…", "authToken": "…",
                              "phoneNumber": "+4915…", "apiBase": "https://api.twilio.com"},
                             {"name": "gateway", "kind": "http", "url": "https://sms.example/v1/messages",
                              "token": "…", "from": "KAI"}]'

An SMS fallback is another Twilio account (or Twilio-compatible server), the default
``"kind": "twilio"``, or any SMS gateway with a JSON API, ``"kind": "http"``
(:mod:`workers.providers.http_sms` says what it sends and expects back).

Names appear in the message status, the logs and the metrics, so they must be unique within a
channel. A provider that keeps failing has its circuit opened for
``PROVIDER_BREAKER_COOLDOWN`` ms after ``PROVIDER_BREAKER_THRESHOLD`` consecutive failures.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from shared.envvars import int_setting
from shared.errors import ConfigError

DEFAULT_BREAKER_THRESHOLD = 5
DEFAULT_BREAKER_COOLDOWN_MS = 30_000

#: Name of the first SMS provider when SMS_PROVIDER_NAME is not set.
DEFAULT_SMS_PROVIDER_NAME = "twilio"


@dataclass(frozen=True)
class SmtpRelay:
    name: str
    host: str
    port: int
    secure: bool = False
    user: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class TwilioAccount:
    name: str
    account_sid: str
    auth_token: str = field(repr=False)
    phone_number: str
    api_base: str = "https://api.twilio.com"


@dataclass(frozen=True)
class HttpSmsGateway:
    name: str
    url: str
    token: str = field(repr=False)
    #: The sender id or number messages go out from.
    sender: str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class _RelayEntry(_Strict):
    name: str = Field(min_length=1, max_length=64)
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    secure: bool = False
    user: str | None = None
    password: str | None = None


class _TwilioEntry(_Strict):
    kind: Literal["twilio"] = "twilio"
    name: str = Field(min_length=1, max_length=64)
    account_sid: str = Field(alias="accountSid", min_length=1)
    auth_token: str = Field(alias="authToken", min_length=1)
    phone_number: str = Field(alias="phoneNumber", min_length=1)
    api_base: str = Field(default="https://api.twilio.com", alias="apiBase")


class _HttpSmsEntry(_Strict):
    kind: Literal["http"]
    name: str = Field(min_length=1, max_length=64)
    url: str = Field(pattern=r"^https?://\S+$")
    token: str = Field(min_length=1)
    sender: str = Field(alias="from", min_length=1)


_SmsEntry = Annotated[_TwilioEntry | _HttpSmsEntry, Field(discriminator="kind")]


def _entries(name: str, raw: str | None, model: Any, *, default_kind: str | None = None) -> list[Any]:
    if raw is None:
        return []
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name} must be a JSON array of providers: {exc}") from None
    try:
        return list(TypeAdapter(list[model]).validate_python(_with_kind(document, default_kind)))
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'value'}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigError(f"{name}: {problems}") from None


def _with_kind(document: Any, kind: str | None) -> Any:
    """Entries without a ``kind`` are of ``kind`` (SMS: Twilio accounts, the first kind there was)."""
    if kind is not None and isinstance(document, list):
        return [{"kind": kind, **e} if isinstance(e, dict) and "kind" not in e else e for e in document]
    return document


def _unique(name: str, names: list[str]) -> None:
    seen: set[str] = set()
    for each in names:
        if each in seen:
            raise ConfigError(f"{name}: provider name {each!r} is used twice; names must be unique")
        seen.add(each)


def _sms_provider(entry: _TwilioEntry | _HttpSmsEntry) -> TwilioAccount | HttpSmsGateway:
    if isinstance(entry, _HttpSmsEntry):
        return HttpSmsGateway(name=entry.name, url=entry.url, token=entry.token, sender=entry.sender)
    return TwilioAccount(
        name=entry.name,
        account_sid=entry.account_sid,
        auth_token=entry.auth_token,
        phone_number=entry.phone_number,
        api_base=entry.api_base.rstrip("/"),
    )


@dataclass(frozen=True)
class ProviderSettings:
    #: EMAIL_PROVIDER_NAME: the first relay's name; unset, it is named by EMAIL_HOST.
    email_name: str | None = None
    #: SMS_PROVIDER_NAME: the first SMS provider's name.
    sms_name: str = DEFAULT_SMS_PROVIDER_NAME
    email_fallbacks: tuple[SmtpRelay, ...] = ()
    sms_fallbacks: tuple[TwilioAccount | HttpSmsGateway, ...] = ()
    breaker_threshold: int = DEFAULT_BREAKER_THRESHOLD
    breaker_cooldown_ms: int = DEFAULT_BREAKER_COOLDOWN_MS

    @classmethod
    def from_env(cls, get: Callable[[str], str | None]) -> ProviderSettings:
        relays = [
            SmtpRelay(
                name=entry.name,
                host=entry.host,
                port=entry.port or (465 if entry.secure else 587),
                secure=entry.secure,
                user=entry.user,
                password=entry.password,
            )
            for entry in _entries("EMAIL_FALLBACK_PROVIDERS", get("EMAIL_FALLBACK_PROVIDERS"), _RelayEntry)
        ]
        accounts = [
            _sms_provider(entry)
            for entry in _entries(
                "SMS_FALLBACK_PROVIDERS", get("SMS_FALLBACK_PROVIDERS"), _SmsEntry, default_kind="twilio"
            )
        ]
        email_name = get("EMAIL_PROVIDER_NAME")
        sms_name = get("SMS_PROVIDER_NAME") or DEFAULT_SMS_PROVIDER_NAME
        first_relay = email_name or get("EMAIL_HOST")
        _unique("EMAIL_FALLBACK_PROVIDERS", [n for n in [first_relay] if n] + [r.name for r in relays])
        _unique("SMS_FALLBACK_PROVIDERS", [sms_name] + [a.name for a in accounts])
        return cls(
            email_name=email_name,
            sms_name=sms_name,
            email_fallbacks=tuple(relays),
            sms_fallbacks=tuple(accounts),
            breaker_threshold=int_setting(get, "PROVIDER_BREAKER_THRESHOLD", DEFAULT_BREAKER_THRESHOLD, 1),
            breaker_cooldown_ms=int_setting(get, "PROVIDER_BREAKER_COOLDOWN", DEFAULT_BREAKER_COOLDOWN_MS, 1),
        )
