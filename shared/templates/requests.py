"""Send requests that name a template instead of giving literal content:
``send_email(to=..., template="welcome", data={...})`` or ``POST /api/messages/email
{to, template, data}``. The recipient is validated like any message's; the content is
rendered by the worker from the template version current at enqueue time."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from shared.channels import Channel
from shared.messages import (
    ChatDestination,
    Identifier,
    InAppType,
    PushOptions,
    _Request,
    check_http_url,
    normalize_email,
    normalize_phone,
)
from shared.payloads import Templated, TemplateRef
from shared.templates.store import KEY_PATTERN, LOCALE_MAX_CHARS, LOCALE_PATTERN


class TemplatedRequest(_Request):
    template: str = Field(pattern=KEY_PATTERN)
    data: dict[str, Any] = Field(default_factory=dict)
    locale: str | None = Field(default=None, pattern=LOCALE_PATTERN, max_length=LOCALE_MAX_CHARS)
    #: Filled by the producer once the template is found; not for callers, so it stays out
    #: of the API's schema.
    template_ref: SkipJsonSchema[TemplateRef | None] = None

    def payload(self) -> Templated:
        if self.template_ref is None:
            raise ValueError("the template is pinned (template_ref) before the payload is built")
        return self.kept(self.template_ref)

    def kept(self, ref: TemplateRef) -> Templated:
        """The stored payload: the template and what the template does not render."""
        return Templated(template=ref)


class TemplatedEmailRequest(TemplatedRequest):
    to: str

    @field_validator("to")
    @classmethod
    def _to(cls, value: str) -> str:
        return normalize_email(value)

    def kept(self, ref: TemplateRef) -> Templated:
        return Templated(template=ref, to=self.to)


class TemplatedSmsRequest(TemplatedRequest):
    to: str

    @field_validator("to")
    @classmethod
    def _to(cls, value: str) -> str:
        return normalize_phone(value)

    def kept(self, ref: TemplateRef) -> Templated:
        return Templated(template=ref, to=self.to)


class TemplatedWebhookRequest(TemplatedRequest):
    url: str

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value)

    def kept(self, ref: TemplateRef) -> Templated:
        return Templated(template=ref, url=self.url)


class TemplatedInAppRequest(TemplatedRequest):
    user_id: Identifier
    type: InAppType = "info"

    def kept(self, ref: TemplateRef) -> Templated:
        return Templated(template=ref, type=self.type)


class TemplatedPushRequest(TemplatedRequest, PushOptions):
    user_id: Identifier

    def kept(self, ref: TemplateRef) -> Templated:
        # The template's data renders the text; it is not handed to the app as well.
        return Templated(template=ref, options=self.options() or None)


class TemplatedChatRequest(TemplatedRequest, ChatDestination):
    def kept(self, ref: TemplateRef) -> Templated:
        return Templated(template=ref, service=self.service, to=self.to, url=self.webhook_url)


TEMPLATED_MODELS: dict[Channel, type[TemplatedRequest]] = {
    Channel.EMAIL: TemplatedEmailRequest,
    Channel.SMS: TemplatedSmsRequest,
    Channel.WEBHOOK: TemplatedWebhookRequest,
    Channel.IN_APP: TemplatedInAppRequest,
    Channel.PUSH: TemplatedPushRequest,
    Channel.CHAT: TemplatedChatRequest,
}
