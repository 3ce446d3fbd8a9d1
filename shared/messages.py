"""The schemas of messages: what a caller may ask to send, validated once at the door.

The same models serve the Python API (snake_case keywords) and the HTTP gateway (camelCase
JSON). A request that passes becomes the ``payload`` stored in its ``notification_logs``
row; workers read that payload back and trust it.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from shared.payloads import (
    ChatPayload,
    EmailPayload,
    InAppPayload,
    Payload,
    PushPayload,
    SmsPayload,
    WebhookPayload,
)
from shared.schedule import Due, SendAt

#: RFC 5322 caps a header line at 998 characters; a subject longer than that is not an email.
EMAIL_SUBJECT_MAX_CHARS = 998
#: Twilio refuses bodies over 1,600 characters (concatenated segments).
SMS_BODY_MAX_CHARS = 1600
#: Inbox items are for reading at a glance.
IN_APP_TITLE_MAX_CHARS = 255
IN_APP_MESSAGE_MAX_CHARS = 5000
#: A push is a glance on a lock screen; the services cap the whole payload at 4 KiB.
PUSH_TITLE_MAX_CHARS = 255
PUSH_BODY_MAX_CHARS = 2000
#: The longest a push service keeps a notification for an offline device (4 weeks).
PUSH_MAX_TTL_SECONDS = 2_419_200
#: Slack truncates at 40,000 characters; Teams cards are smaller still (28 KB in all).
CHAT_TEXT_MAX_CHARS = 40_000
#: Slack takes at most 50 blocks per message.
SLACK_MAX_BLOCKS = 50
#: A Slack channel (``C…``, ``G…``), direct message (``D…``) or member id (``U…``, ``W…``), or a
#: channel name (``#alerts``).
SLACK_CHANNEL_PATTERN = r"^(?:[CDGUW][A-Z0-9]{2,20}|#[a-z0-9][a-z0-9._-]{0,79})$"
#: Identifiers chosen by callers.
ID_MAX_CHARS = 255
URL_MAX_CHARS = 2048
#: The highest TCP port.
MAX_PORT = 65535

InAppType = Literal["info", "success", "warning", "error"]
Identifier = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=ID_MAX_CHARS)]


#: What a value bound for a header line (a subject, an address, a URL, a webhook header) may
#: not hold: C0 and C1 controls except tab, DEL, the Unicode line and paragraph separators,
#: and lone surrogates. Python's email package splits a header on every line boundary
#: ``str.splitlines`` knows (``\v``, ``\f``, ``\x1c``-``\x1e``, ``\x85``, U+2028, U+2029, not
#: only CR and LF), so such a value would be accepted here and fail the message later.
_NOT_HEADER_SAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def fits_a_header(value: str) -> bool:
    """Whether ``value`` can stand in a header line: one line, no control characters."""
    return _NOT_HEADER_SAFE.search(value) is None


def single_line(value: str, what: str) -> str:
    """``value`` if it :func:`fits_a_header`, else ValueError (header injection)."""
    if not fits_a_header(value):
        raise ValueError(f"{what} must be one line without control characters (header injection)")
    return value


def normalize_email(raw: str) -> str:
    """A deliverable-looking address in normalized form, or ValueError saying why not."""
    single_line(raw, "email address")
    try:
        return validate_email(raw, check_deliverability=False, allow_smtputf8=True).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"invalid email address: {exc}") from None


def normalize_phone(raw: str) -> str:
    """E.164 (``+15551234567``) or ValueError. Numbers must carry their country code."""
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        raise ValueError("phone number must be in E.164 format, e.g. +14155550100") from None
    if not phonenumbers.is_possible_number(number) or not phonenumbers.is_valid_number(number):
        raise ValueError("phone number is not a valid number for its country code")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def check_http_url(raw: str, *, allow_private: bool = True) -> str:
    if len(raw) > URL_MAX_CHARS:
        raise ValueError(f"URL longer than {URL_MAX_CHARS} characters")
    single_line(raw, "URL")
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https"):
        raise ValueError("URL must use http or https")
    if not parts.hostname:
        raise ValueError("URL must name a host")
    if parts.username or parts.password:
        raise ValueError("URL must not carry credentials; use custom headers instead")
    try:
        port = parts.port
    except ValueError:  # not a number, or over 65535
        port = 0
    if port == 0:
        raise ValueError(f"URL has an invalid port; give a number from 1 to {MAX_PORT} or none")
    try:
        # What the resolver will be asked: a label over 63 characters, an empty label or a
        # character IDNA cannot encode would only fail later, when the URL is used.
        parts.hostname.encode("idna")
    except UnicodeError:
        raise ValueError("URL host is not a valid host name") from None
    if not allow_private:
        host = parts.hostname
        if host == "localhost" or host.endswith(".localhost"):
            raise ValueError("URL points at this machine (WEBHOOK_ALLOW_PRIVATE_NETWORKS is false)")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None and not address.is_global:
            raise ValueError(
                f"URL points at a non-public address {address} (WEBHOOK_ALLOW_PRIVATE_NETWORKS is false)"
            )
    return raw


def json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


class _Request(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        str_strip_whitespace=False,
        frozen=True,
    )

    user_id: Identifier | None = None
    event_type: Identifier | None = None
    idempotency_key: Identifier | None = None
    #: Send later: an RFC 3339 time, or ``{"localTime": "HH:MM"}`` on the recipient's clock.
    send_at: SendAt | None = None
    #: Send this many milliseconds from now.
    delay_ms: int | None = Field(default=None, ge=0)
    #: Strict: ``"yes"`` or ``1`` is refused rather than read as true.
    transactional: StrictBool = Field(
        default=False,
        description="A message the recipient needs (a receipt, a password reset), not a campaign: "
        "an email is never tracked (no pixel, no click redirect), whatever its template asks.",
    )
    #: When the producer found the message due (:meth:`scheduled`); not part of the request.
    _due: Due | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_send_time(self) -> Self:
        if self.send_at is not None and self.delay_ms is not None:
            raise ValueError("give sendAt or delayMs, not both")
        return self

    @property
    def due(self) -> Due | None:
        return self._due

    def scheduled(self, due: Due | None) -> Self:
        """This request, due at ``due`` (None: at once)."""
        copy = self.model_copy()
        copy._due = due
        return copy

    def payload(self) -> Payload:
        """What the message carries to its provider, stored in its row."""
        raise NotImplementedError


class EmailRequest(_Request):
    to: str
    subject: str = Field(min_length=1, max_length=EMAIL_SUBJECT_MAX_CHARS)
    text: str | None = None
    html: str | None = None

    @field_validator("to")
    @classmethod
    def _to(cls, value: str) -> str:
        return normalize_email(value)

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        return single_line(value, "subject")

    @model_validator(mode="after")
    def _body(self) -> EmailRequest:
        if not (self.text or self.html):
            raise ValueError("an email needs text or html (or both)")
        return self

    def payload(self) -> EmailPayload:
        return EmailPayload(to=self.to, subject=self.subject, text=self.text, html=self.html)


class SmsRequest(_Request):
    to: str
    message: str = Field(min_length=1, max_length=SMS_BODY_MAX_CHARS)

    @field_validator("to")
    @classmethod
    def _to(cls, value: str) -> str:
        return normalize_phone(value)

    def payload(self) -> SmsPayload:
        return SmsPayload(to=self.to, message=self.message)


class WebhookRequest(_Request):
    url: str
    payload_: dict[str, Any] | list[Any] = Field(alias="payload")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value)

    def payload(self) -> WebhookPayload:
        return WebhookPayload(url=self.url, body=self.payload_)


class InAppRequest(_Request):
    user_id: Identifier
    title: str = Field(min_length=1, max_length=IN_APP_TITLE_MAX_CHARS)
    message: str = Field(min_length=1, max_length=IN_APP_MESSAGE_MAX_CHARS)
    type: InAppType = "info"
    action_url: str | None = Field(default=None, max_length=URL_MAX_CHARS)
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("action_url")
    @classmethod
    def _action_url(cls, value: str | None) -> str | None:
        if value is None or (value.startswith("/") and not value.startswith("//")):
            return value  # a path inside the host application
        return check_http_url(value)

    def payload(self) -> InAppPayload:
        return InAppPayload(
            title=self.title, message=self.message, type=self.type, action_url=self.action_url, data=self.data
        )


PushUrgency = Literal["very-low", "low", "normal", "high"]


def check_link(value: str | None) -> str | None:
    """A link a notification opens: a path inside the host application or an http(s) URL."""
    if value is None or (value.startswith("/") and not value.startswith("//")):
        return value
    return check_http_url(value)


class PushOptions(BaseModel):
    """How a push travels, whatever its content (literal or from a template)."""

    user_id: Identifier
    #: Handed to the app beside the notification (as strings: FCM takes nothing else).
    data: dict[str, str | int | float | bool] = Field(default_factory=dict)
    icon: str | None = Field(default=None, max_length=URL_MAX_CHARS)
    ttl: int | None = Field(
        default=None,
        ge=0,
        le=PUSH_MAX_TTL_SECONDS,
        description="Seconds a push service keeps it for an offline device",
    )
    urgency: PushUrgency = "normal"
    topic: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="A newer push with the same topic replaces this one",
    )

    @field_validator("icon")
    @classmethod
    def _icon(cls, value: str | None) -> str | None:
        return check_link(value)

    def string_data(self) -> dict[str, str]:
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in self.data.items()}

    def options(self) -> dict[str, Any]:
        """What a templated push keeps beside its template."""
        out = {"ttl": self.ttl, "urgency": self.urgency, "topic": self.topic, "icon": self.icon}
        return {k: v for k, v in out.items() if v is not None}


class PushRequest(_Request, PushOptions):
    user_id: Identifier
    title: str = Field(min_length=1, max_length=PUSH_TITLE_MAX_CHARS)
    body: str = Field(default="", max_length=PUSH_BODY_MAX_CHARS)
    url: str | None = Field(default=None, max_length=URL_MAX_CHARS)

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        return single_line(value, "title")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return check_link(value)

    def payload(self) -> PushPayload:
        return PushPayload(
            title=self.title,
            body=self.body,
            url=self.url,
            icon=self.icon,
            data=self.string_data(),
            ttl=self.ttl,
            urgency=self.urgency,
            topic=self.topic,
        )


ChatService = Literal["slack", "teams"]


class ChatDestination(BaseModel):
    """Where a chat message goes: ``to`` a Slack channel or member (the bot token), an
    incoming webhook URL, or, with only ``userId``, that user's own chat contacts. (Not
    ``channel``: in a batch that names the message's channel.)"""

    service: ChatService
    to: str | None = Field(default=None, pattern=SLACK_CHANNEL_PATTERN)
    webhook_url: str | None = None
    #: The recipient the message's row shows, once the producer found the destination.
    _recipient: str | None = PrivateAttr(default=None)

    @property
    def owner(self) -> str | None:
        """The user the message is for, if any (``userId`` of the request)."""
        user_id = getattr(self, "user_id", None)
        return None if user_id is None else str(user_id)

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)

    @model_validator(mode="after")
    def _one_destination(self) -> Self:
        if self.to is not None and self.service != "slack":
            raise ValueError("to names a Slack channel or member; Teams is reached by webhookUrl")
        if self.to is not None and self.webhook_url is not None:
            raise ValueError("give to or webhookUrl, not both")
        if self.to is None and self.webhook_url is None and self.owner is None:
            raise ValueError("give to (a Slack channel), webhookUrl, or userId (the user's chat contacts)")
        return self


class ChatRequest(_Request, ChatDestination):
    text: str = Field(min_length=1, max_length=CHAT_TEXT_MAX_CHARS)
    blocks: list[dict[str, Any]] | None = Field(default=None, max_length=SLACK_MAX_BLOCKS)
    card: dict[str, Any] | None = Field(default=None, description="A Teams Adaptive Card")

    @model_validator(mode="after")
    def _content_fits_service(self) -> Self:
        if self.blocks is not None and self.service != "slack":
            raise ValueError("blocks are Slack's; Teams takes a card")
        if self.card is not None:
            if self.service != "teams":
                raise ValueError("a card is Teams'; Slack takes blocks")
            if self.card.get("type") != "AdaptiveCard" or not isinstance(self.card.get("version"), str):
                raise ValueError('card must be an Adaptive Card: "type": "AdaptiveCard" and a "version"')
        return self

    def payload(self) -> ChatPayload:
        return ChatPayload(
            service=self.service,
            text=self.text,
            channel=self.to,
            webhook_url=self.webhook_url,
            blocks=self.blocks,
            card=self.card,
        )
