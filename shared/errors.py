"""The error tree. Its shape decides what happens to a message:

    KaiError
    ├── ConfigError                 settings are missing or malformed; the process refuses to start
    ├── ValidationError             bad input from a caller; nothing is enqueued (HTTP 400/413/422)
    │   ├── PayloadTooLarge         a body or payload over the size cap (HTTP 413)
    │   ├── IdempotencyKeyReused    an idempotency key already used for a different request (HTTP 409)
    │   ├── NotCancelable           canceling a message that has started or finished (HTTP 409)
    │   ├── NotScheduled            rescheduling a message that is no longer scheduled (HTTP 409)
    │   ├── ExperimentConflict      an experiment's state forbids the change (HTTP 409)
    │   └── TemplateError           a template refused when saved: syntax, unknown helper/partial (HTTP 400)
    │       ├── TemplateTooLarge    over what one template may cost to compile (HTTP 422)
    │       ├── PartialCycle        partials that would include each other (HTTP 422)
    │       ├── PartialsTooDeep     partials that would include each other too deeply (HTTP 422)
    │       └── TemplateInUse       retiring a partial that current templates still include (HTTP 409)
    ├── EnqueueError                the broker did not confirm the message; the caller may retry (HTTP 503)
    ├── NotFound                    the addressed record does not exist (HTTP 404)
    ├── RenderError                 a stored template could not render one message (that message fails)
    │   └── RenderLimitExceeded     the render ran over its time or output budget (preview: HTTP 422)
    └── DeliveryError               a provider refused or failed a send
        ├── TemporaryDeliveryError  worth retrying: SMTP 4xx, timeouts, HTTP 408/429/5xx, Twilio 5xx/20429
        └── PermanentDeliveryError  retrying cannot help: SMTP 5xx, HTTP 4xx, Twilio 21211 …

Providers wrap their vendor's exceptions into the two delivery errors at the edge
(``raise TemporaryDeliveryError(...) from exc``); the delivery pipeline reads only these.
"""

from __future__ import annotations

from typing import Any


class KaiError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(KaiError):
    """A setting is missing or malformed."""


class ValidationError(KaiError):
    """Caller input was refused. ``details`` lists ``{"field": ..., "message": ...}`` items."""

    status_code = 422
    code = "validation_error"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class PayloadTooLarge(ValidationError):
    status_code = 413
    code = "payload_too_large"


class IdempotencyKeyReused(ValidationError):
    """The caller's idempotency key names an earlier request with a different body: neither
    the first message's id nor a new message would be what the caller asked for."""

    status_code = 409
    code = "idempotency_key_reused"


class NotCancelable(ValidationError):
    """Only a message that has not started (scheduled, or queued and never attempted) can be
    canceled: one a worker has taken may already be on its way."""

    status_code = 409
    code = "not_cancelable"


class NotScheduled(ValidationError):
    """Only a scheduled message can get another send time: the scheduler has published it."""

    status_code = 409
    code = "not_scheduled"


class ExperimentConflict(ValidationError):
    """A template already under a running experiment, or an experiment no longer running (or
    without a winner yet) asked to change."""

    status_code = 409
    code = "experiment_conflict"


class TemplateError(ValidationError):
    """A template was refused. ``details`` items carry ``part``, ``line`` and ``message``."""

    status_code = 400
    code = "invalid_template"


class TemplateTooLarge(TemplateError):
    """A template over the tags or characters one template may have in all its parts, or
    whose compile ran past its CPU deadline."""

    status_code = 422
    code = "template_too_large"


class PartialCycle(TemplateError):
    """Saving this partial would make partials include each other: every template using
    one of them would fail to render."""

    status_code = 422
    code = "partial_cycle"


class PartialsTooDeep(TemplateError):
    """Saving this partial would make a chain of partials including partials too long."""

    status_code = 422
    code = "partials_too_deep"


class TemplateInUse(TemplateError):
    """Retiring this partial would make the templates still including it fail to render."""

    status_code = 409
    code = "template_in_use"


class RenderError(KaiError):
    """Rendering a message from its template failed (a missing variable, a bad value)."""


class RenderLimitExceeded(RenderError):
    """A render used more CPU time or produced more output than its budget allows."""


class EnqueueError(KaiError):
    """The broker did not confirm the message, so it was not accepted."""


class NotFound(KaiError):
    """The addressed record does not exist (or is not visible to the caller)."""


class DeliveryError(KaiError):
    """A provider could not deliver. ``code`` is a short stable reason (``smtp_550``, ``http_503``…)."""

    #: The named provider that failed, when the channel has several (failover).
    provider: str | None = None

    def __init__(self, message: str, *, code: str = "delivery_error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class TemporaryDeliveryError(DeliveryError):
    """Retry later. ``retry_after_ms`` carries a provider's own hint (HTTP ``Retry-After``)."""

    def __init__(self, message: str, *, code: str = "temporary", retry_after_ms: int | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_ms = retry_after_ms


class NotAttempted(TemporaryDeliveryError):
    """Nothing was sent: every provider of the channel is resting after repeated failures (its
    circuit is open). The message waits ``retry_after_ms`` without spending an attempt."""


class PermanentDeliveryError(DeliveryError):
    """Fail now: the same request would fail again."""


class TargetGone(PermanentDeliveryError):
    """The provider says the address no longer exists (a push subscription answered 404/410,
    an unregistered device token, a removed chat webhook): it is pruned, not retried."""
