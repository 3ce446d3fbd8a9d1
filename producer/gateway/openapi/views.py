"""The JSON bodies the gateway answers with, as pydantic models for ``/openapi.json``.

The endpoints build these bodies as plain dicts (the ``view`` functions beside each table);
these models state their shape so the document, and the fuzz test that checks every answer
against it, hold the endpoints to it. Keys are camelCase like the rest of the API.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from producer.receipts import ReceiptType

Timestamp = str
"""An ISO 8601 time with its UTC offset."""


class View(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ErrorInfo(View):
    code: str
    message: str
    #: What was wrong, item by item: ``{field, message, type}`` for a field, ``{part, line,
    #: message}`` for a template.
    details: list[dict[str, Any]]


class Error(View):
    """Every error answer: a stable ``code``, a readable ``message`` and ``details``."""

    error: ErrorInfo


class Health(View):
    status: Literal["ok"]


class Readiness(View):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str]


class Queued(View):
    """Accepted and enqueued, not delivered: follow ``id`` for the outcome. A send with
    ``sendAt``/``delayMs`` is ``scheduled`` for ``sendAt`` instead."""

    id: str
    status: Literal["queued", "scheduled"]
    send_at: Timestamp | None = Field(default=None, description="When a scheduled message is due.")
    timezone: str | None = Field(
        default=None, description="The zone a `localTime` send time was read in (the user's, else UTC)."
    )


class BatchRequest(BaseModel):
    """Up to 1,000 messages, each an object with its ``channel`` (email, sms, webhook, in-app, push, chat)
    beside the fields of that channel's send."""

    model_config = ConfigDict(extra="forbid")

    messages: list[dict[str, Any]]


class Refused(View):
    """An item of a batch that was not enqueued, and why."""

    error: ErrorInfo


class BatchQueued(View):
    """One result per item, in order: its id, or its error (nothing of it was enqueued)."""

    results: list[Queued | Refused]


class EscalationLink(BaseModel):
    """What a later escalation step waits on: ``of`` the first step's message (whose in-app
    notification ``notRead`` reads), ``after`` the step just before (whose state
    ``notDelivered`` and ``failed`` read), ``if`` the condition that must still hold when the
    step is due."""

    of: str
    after: str
    if_: Literal["notRead", "notDelivered", "failed"] = Field(alias="if")


class EscalationStep(BaseModel):
    """One step of an escalation as it stands; ``reason`` says why a canceled one never went."""

    message_id: str = Field(alias="messageId")
    channel: str
    status: str
    if_: Literal["notRead", "notDelivered", "failed"] | None = Field(alias="if")
    send_at: Timestamp | None = Field(alias="sendAt")
    reason: str | None


class Escalation(View):
    """The steps a rule's escalation made of one event, first to last."""

    first_message_id: str
    steps: list[EscalationStep]


class ReceiptView(View):
    """Something the provider said about the message after accepting it."""

    type: ReceiptType
    code: str | None = Field(description="The provider's own word or code (`undelivered 30003`).")
    provider: str
    detail: str | None
    occurred_at: Timestamp


class MessageStatus(View):
    id: str
    channel: str
    status: Literal["scheduled", "queued", "processing", "sent", "delivered", "failed", "skipped", "canceled"]
    recipient: str
    user_id: str | None
    event_type: str | None
    event_id: str | None = Field(description="The event whose rule produced the message, if any.")
    template_key: str | None
    template_version: int | None
    attempts: int
    max_attempts: int
    last_error: str | None
    error_code: str | None
    rule_id: str | None = Field(default=None, description="The event rule that made it, if one did.")
    experiment_id: str | None = Field(default=None, description="The template experiment it was in, if any.")
    variant: str | None = Field(default=None, description="The experiment's variant it got (rendered with).")
    provider_message_id: str | None
    provider: str | None = Field(
        description="Which of the channel's providers the last attempt went to (a channel may "
        "have several, tried in order: failover); null before the first attempt and for webhooks "
        "and in-app messages."
    )
    idempotency_key: str | None
    created_at: Timestamp | None
    updated_at: Timestamp | None
    next_attempt_at: Timestamp | None
    send_at: Timestamp | None = Field(description="The send time asked for (`sendAt`/`delayMs`), if any.")
    timezone: str | None = Field(description="The zone a `localTime` send time was read in.")
    sent_at: Timestamp | None
    delivered_at: Timestamp | None
    completed_at: Timestamp | None
    escalation: EscalationLink | None = Field(
        default=None, description="A later escalation step: the messages it waits on and the condition."
    )
    transactional: bool = Field(
        default=False,
        description="True for a message sent `transactional` (never tracked); left out otherwise.",
    )
    receipts: list[ReceiptView] = Field(
        default_factory=list,
        description="What the provider said after accepting the message, in order (`GET "
        "/api/messages/{id}` only; the log's pages leave it out).",
    )


class ReportFinding(View):
    """What a bounce or complaint report said about one email."""

    message_id: str
    type: Literal["bounced", "complained"]
    code: str = Field(
        description="`hard 5.1.1` / `soft 4.2.2` for a bounce; the feedback type for a complaint."
    )
    recipient: str | None
    suppressed: bool = Field(description="Whether the address is now suppressed.")


class ReportResult(View):
    receipts: list[ReportFinding]


class Suppression(View):
    address: str
    reason: Literal["hard_bounce", "complaint"]
    detail: str | None
    message_id: str | None = Field(description="The email whose bounce or complaint suppressed it.")
    created_at: Timestamp


class Suppressions(View):
    """A page of suppressed addresses, in address order."""

    items: list[Suppression]
    next_cursor: str | None


class MessageLog(View):
    """A page of the message log, newest first."""

    items: list[MessageStatus]
    next_cursor: str | None


class EventDigest(View):
    """A digest holding the event: ``open`` until ``closesAt``, then ``closed`` and sent, or
    ``failed`` when its message could not be made (``error`` says why)."""

    id: str
    rule_id: str
    state: Literal["open", "closed", "failed"]
    count: int
    closes_at: Timestamp
    closed_at: Timestamp | None
    error: str | None


class Event(View):
    id: str
    event_type: str
    user_id: str | None
    data: dict[str, Any]
    status: str
    matched_rules: int | None
    message_ids: list[str]
    created_at: Timestamp
    processed_at: Timestamp | None
    escalations: list[Escalation] = Field(
        default_factory=list, description="The escalations the event's rules started, with their steps."
    )
    digests: list[EventDigest] = Field(
        default_factory=list, description="The digests the event was folded into, open or closed."
    )


class Contacts(View):
    user_id: str
    email: str | None
    phone: str | None
    locale: str | None
    slack_user_id: str | None
    slack_webhook_url: str | None = Field(description="Masked: scheme and host only")
    teams_webhook_url: str | None = Field(description="Masked: scheme and host only")


class Template(View):
    """One version of a template; the parts present depend on its channel."""

    key: str
    channel: str
    locale: str
    version: int
    current: bool
    deleted: bool
    created_at: Timestamp
    sample_data: dict[str, Any] | None
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    sms: str | None = None
    title: str | None = None
    message: str | None = None
    action_url: str | None = None
    payload: Any = None
    track_opens: bool | None = Field(
        default=None,
        description="Email only: a tracking pixel (with `TRACKING_SECRET` and `PUBLIC_BASE_URL`).",
    )
    track_clicks: bool | None = Field(
        default=None, description="Email only: web links go through the click redirect."
    )


class TemplateList(View):
    """A page of every template's current versions."""

    items: list[Template]
    next_cursor: str | None


class TemplateVersions(View):
    """A page of one template's current versions, one per channel and locale."""

    items: list[Template]
    next_cursor: str | None


class TemplatePreview(View):
    """The rendered parts of the template's channel (``subject``, ``text``, ``payload``…)."""

    model_config = ConfigDict(extra="allow")

    key: str
    channel: str
    locale: str
    version: int


class Rule(View):
    id: str
    name: str
    event_type: str
    channels: list[str]
    template_key: str
    conditions: list[Any]
    priority: int
    critical: bool
    transactional: bool = Field(
        description="Its emails are never tracked (no pixel, no click redirect), whatever the template asks."
    )
    delay_ms: int
    steps: list[dict[str, Any]] | None = Field(
        default=None, description='Escalation steps: `{"channel", "after", "if"}`, first to last.'
    )
    active: bool
    digest: dict[str, Any] | None
    throttle: dict[str, Any] | None
    chat: dict[str, Any] | None = None
    created_at: Timestamp
    updated_at: Timestamp


class RuleList(View):
    items: list[Rule]
    next_cursor: str | None


class QuietHoursView(View):
    start: str
    end: str


class Preferences(View):
    user_id: str
    email_enabled: bool
    sms_enabled: bool
    in_app_enabled: bool
    webhook_enabled: bool
    push_enabled: bool
    chat_enabled: bool
    event_preferences: dict[str, dict[str, bool]]
    quiet_hours: QuietHoursView | None
    timezone: str
    digest: dict[str, str]


class Notification(View):
    id: str
    title: str
    message: str
    type: Literal["info", "success", "warning", "error"]
    action_url: str | None
    created_at: Timestamp
    read_at: Timestamp | None
    seen_at: Timestamp | None = Field(
        description="When the user's inbox first showed it, or it was read or clicked; null until then."
    )
    data: dict[str, Any]


class Feed(View):
    items: list[Notification]
    next_cursor: str | None


class UnreadCount(View):
    count: int


class MarkedRead(View):
    updated: int
    unread_count: int


class MarkedSeen(View):
    updated: int


class Clicked(View):
    clicked: int


class Deleted(View):
    deleted: int
    unread_count: int


class CircuitView(View):
    state: Literal["closed", "open", "half_open"]
    consecutive_failures: int
    retry_in_ms: int | None = Field(description="While open: how long until the probe may go.")


class WebhookEndpoint(View):
    """An endpoint as the API shows it: never its secrets."""

    id: str
    url: str
    description: str | None
    event_types: list[str]
    active: bool
    headers: dict[str, str] = Field(
        description="The custom headers by name, each value masked (`••••`, followed by its last 4 "
        "characters when it has 16 or more): they are secrets, stored encrypted. Sending a value "
        "back exactly as shown here keeps the stored one."
    )
    rate_limit_per_second: int | None
    max_retries: int | None
    retry_schedule_ms: list[int] | None
    ordered: bool
    owner_email: str | None
    failing_since: Timestamp | None
    consecutive_failures: int
    disabled_at: Timestamp | None
    disabled_reason: str | None
    previous_secret_expires_at: Timestamp | None
    created_at: Timestamp | None
    updated_at: Timestamp | None
    circuit: CircuitView | None = Field(
        default=None,
        description="Reading one endpoint: its circuit breaker as the workers share it in Redis "
        "(null without REDIS_URL, when each worker keeps its own).",
    )


class WebhookEndpointCreated(WebhookEndpoint):
    """The new endpoint with its signing secret, shown this once."""

    secret: str


class WebhookEndpointList(View):
    items: list[WebhookEndpoint]
    next_cursor: str | None


class DeliveryAttempt(View):
    id: str
    message_id: str
    configuration_id: str | None
    attempt: int
    url: str
    success: bool
    request_headers: dict[str, Any] | None
    request_body: str | None
    response_status: int | None
    response_headers: dict[str, Any] | None
    response_body: str | None = Field(
        description="The first 4 KiB of the receiver's answer (at most 4,096 bytes of UTF-8)."
    )
    error_class: str | None
    error_message: str | None
    duration_ms: float | None
    timings: dict[str, Any]
    created_at: Timestamp


class DeliveryLogPage(View):
    items: list[DeliveryAttempt]
    next_cursor: str | None


class WebhookTestResult(View):
    message_id: str
    status: Literal["attempted", "pending"]
    attempt: DeliveryAttempt | None


class RotatedSecret(View):
    id: str
    secret: str
    previous_secret_expires_at: Timestamp | None


class Recovered(View):
    replayed: int
    message_ids: list[str]


class Latency(View):
    """Percentiles in milliseconds, read from a logarithmic histogram (within about 10%)."""

    p50_ms: int | None = Field(alias="p50Ms")
    p95_ms: int | None = Field(alias="p95Ms")


class Funnel(View):
    """Each measure counts a message once; rates are over messages sent (``failureRate``:
    over sent and failed; ``clickToOpenRate``: over opened), null without a denominator."""

    sent: int
    delivered: int
    failed: int
    bounced: int
    complained: int
    opened: int
    clicked: int
    read: int
    seen: int
    unsubscribed: int
    bot_opened: int = Field(description="Opens by mail scanners and prefetchers, not counted in `opened`.")
    bot_clicked: int = Field(description="Clicks by mail scanners, not counted in `clicked`.")
    rates: dict[str, float | None]
    time_to_deliver: Latency
    time_to_read: Latency


class FunnelAt(Funnel):
    start: Timestamp


class AnalyticsGroup(View):
    key: dict[str, str] = Field(description="The group's value of each `groupBy` dimension ('' when none).")
    totals: Funnel
    series: list[FunnelAt] | None = Field(
        default=None, description="One entry per bucket of the range, empty ones included (with `interval`)."
    )


class Analytics(View):
    from_: Timestamp = Field(alias="from")
    to: Timestamp
    interval: Literal["hour", "day", "week"] | None
    group_by: list[str]
    source: Literal["hourly", "daily"] = Field(description="The rollup the answer was read from.")
    groups: list[AnalyticsGroup]


class VariantView(View):
    name: str
    weight: float
    parts: dict[str, Any] = Field(description="The template parts it replaces; none for the control.")


class VariantResult(View):
    name: str
    funnel: Funnel
    trials: int = Field(description="Messages sent with this variant.")
    successes: int = Field(description="Of those, how many reached the experiment's metric.")
    rate: float | None


class ComparisonView(View):
    variant: str
    rate: float
    control_rate: float
    difference: float
    lift: float | None
    confidence_interval: list[float] = Field(description="Of the difference, at the adjusted level.")
    z: float
    p_value: float
    alpha: float = Field(description="The level tested at: 1 - confidence, divided by the comparisons.")
    significant: bool
    verdict: Literal["insufficient_data", "better", "worse", "no_difference"]


class ExperimentView(View):
    id: str
    name: str
    template: str
    channel: str
    locale: str
    template_version: int
    status: Literal["running", "stopped", "concluded"]
    metric: Literal["opened", "clicked", "read", "delivered"]
    control: str
    variants: list[VariantView]
    confidence: float
    min_sample: int
    auto_promote: bool
    winner: str | None
    promoted_version: int | None
    created_at: Timestamp
    ended_at: Timestamp | None


class ExperimentWithResults(ExperimentView):
    test: Literal["two-proportion z-test"]
    results: list[VariantResult]
    comparisons: list[ComparisonView]
    best: str | None = Field(description="The variant a conclusion without a name would promote.")


class ExperimentList(View):
    items: list[ExperimentView]
    next_cursor: str | None


class DeadLetter(View):
    """A dead-lettered message, with what its row says of the failure (absent when the row
    is gone)."""

    id: str | None
    actor: str | None
    queue: str | None
    status: str | None = None
    recipient: str | None = None
    attempts: int | None = None
    last_error: str | None = None
    error_code: str | None = None
    failed_at: Timestamp | None = None


class DeadLetterPage(View):
    items: list[DeadLetter]
    next_cursor: str | None


class Handled(View):
    count: int = Field(description="How many dead letters were handled.")


class QueueView(View):
    queue: str
    depth: int | None = Field(description="Ready messages; null when the queue is not declared yet.")
    consumers: int | None
    delayed: int | None = Field(description="Messages waiting out a retry delay (the `.DQ` queue).")
    dead_lettered: int | None = Field(description="Messages in the `.XQ` queue.")
    recent: dict[str, int] = Field(description="Outcomes of the last minute, by status.")


class Fleet(View):
    broker: Literal["rabbitmq", "embedded"]
    queues: list[QueueView]


class MessageStory(View):
    id: str
    channel: str
    payload: dict[str, Any] = Field(description="The stored payload, every credential's value masked.")
    attempts: list[DeliveryAttempt] = Field(description="Attempts the webhook worker logged, newest first.")


class VapidKey(View):
    public_key: str = Field(description="The uncompressed P-256 point, base64url (applicationServerKey)")


class Device(View):
    """A device push notifications reach; its token or endpoint shown masked."""

    id: str
    user_id: str
    kind: Literal["web", "fcm", "apns"]
    token: str
    app_id: str | None
    label: str | None
    created_at: Timestamp
    last_success_at: Timestamp | None


class DeviceList(View):
    items: list[Device]
    next_cursor: str | None
