"""The eight tables of the product brief (and the contacts event rules send to), as typed
SQLAlchemy 2 models.

``notification_logs`` is the source of truth for every message: the broker only carries
message ids, so a message the broker loses can always be found (non-terminal status) and
sent again from its row. Other tables serve templates, preferences, rules, webhooks and
events; their behaviour lives in the modules that use them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db.histograms import Histogram

#: Constraint names Alembic can reproduce on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: JSON documents: JSONB on PostgreSQL (indexable, compact), JSON text elsewhere.
JSONDoc = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONDoc, list[Any]: JSONDoc}


class NotificationLog(Base):
    """One row per message on any channel: what to send, and where it stands."""

    __tablename__ = "notification_logs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(Text)
    user_id: Mapped[str | None] = mapped_column(String(255))
    event_type: Mapped[str | None] = mapped_column(String(255))
    event_id: Mapped[str | None] = mapped_column(String(36))
    template_key: Mapped[str | None] = mapped_column(String(255))
    template_version: Mapped[int | None] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    #: Whose key it is: ``key:<fingerprint>`` (a server key), ``user:<hash>`` (a user token),
    #: ``api`` (the Python API); empty for keys the service makes itself (revision 0007).
    idempotency_scope: Mapped[str] = mapped_column(String(64), default="", server_default=text("''"))
    #: SHA-256 of the request that first used the key: the same key with another body is refused.
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    #: The message itself (subject/text/html, body, url/payload, title/message …).
    payload: Mapped[dict[str, Any]] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    #: The named provider of the last attempt (a channel may fail over between several).
    provider: Mapped[str | None] = mapped_column(String(64))
    #: When the next attempt is planned (informational, shown by the API).
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    #: Set only while the scheduler, not the broker, holds the message: publish it at this time.
    due_at: Mapped[datetime | None] = mapped_column()
    #: A worker's claim on the message (see DELIVERY_LEASE).
    locked_until: Mapped[datetime | None] = mapped_column()
    #: When the sender asked for the message to go (``sendAt``/``delayMs``); kept after it went.
    send_at: Mapped[datetime | None] = mapped_column()
    #: The time zone a ``{"localTime": …}`` send time was read in (revision 0010).
    send_at_zone: Mapped[str | None] = mapped_column(String(64))
    #: A later step of an escalation: the first step's message, and the condition that must
    #: hold for this one to go (revision 0013); the step just before it, whose state
    #: ``notDelivered`` and ``failed`` read (revision 0014; None on older rows: the first).
    escalation_of: Mapped[str | None] = mapped_column(String(36))
    escalation_if: Mapped[str | None] = mapped_column(String(16))
    escalation_after: Mapped[str | None] = mapped_column(String(36))
    #: The event rule that made it, and the experiment and variant its template rendered
    #: (revision 0020): dimensions of the analytics.
    rule_id: Mapped[str | None] = mapped_column(String(36))
    experiment_id: Mapped[str | None] = mapped_column(String(36))
    variant: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()
    delivered_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        # The key first: a repeat is looked up by its key (the scope is matched in Python).
        UniqueConstraint(
            "idempotency_key", "idempotency_scope", name="uq_notification_logs_idempotency_scope_key"
        ),
        Index("ix_notification_logs_due_at", "due_at", postgresql_where=text("due_at IS NOT NULL")),
        Index("ix_notification_logs_status_updated_at", "status", "updated_at"),
        # The message log, newest first: unfiltered, by user, status or channel (revision 0009).
        Index("ix_notification_logs_created_at_id", "created_at", "id"),
        Index("ix_notification_logs_user_id_created_at_id", "user_id", "created_at", "id"),
        Index("ix_notification_logs_status_created_at_id", "status", "created_at", "id"),
        Index("ix_notification_logs_channel_created_at_id", "channel", "created_at", "id"),
        Index("ix_notification_logs_event_id", "event_id"),
        Index("ix_notification_logs_channel_completed_at", "channel", "completed_at"),
        Index(
            "ix_notification_logs_escalation_of",
            "escalation_of",
            postgresql_where=text("escalation_of IS NOT NULL"),
            sqlite_where=text("escalation_of IS NOT NULL"),
        ),
    )


class UserNotificationPreference(Base):
    """A user's choices: channel opt-outs, per event type and channel switches, quiet hours."""

    __tablename__ = "user_notification_preferences"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    email_enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    sms_enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    in_app_enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    webhook_enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    push_enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    chat_enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    #: ``{"order.shipped": {"sms": false}}``
    event_preferences: Mapped[dict[str, Any]] = mapped_column(default=dict)
    quiet_hours_start: Mapped[str | None] = mapped_column(String(5))
    quiet_hours_end: Mapped[str | None] = mapped_column(String(5))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default=text("'UTC'"))
    #: ``{"all": "daily", "order.shipped": "instant"}``
    digest_preferences: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Notification(Base):
    """An in-app notification in a user's inbox."""

    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255))
    #: The message that created it; unique so a redelivered message cannot insert twice.
    notification_log_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    title: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16), default="info")
    action_url: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column()
    #: When the user's inbox first showed it, or it was read or clicked (revision 0021).
    seen_at: Mapped[datetime | None] = mapped_column()
    deleted_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        Index("ix_notifications_user_id_created_at", "user_id", "created_at", "id"),
        #: The retention purge's search for expired rows (revision 0003).
        Index("ix_notifications_created_at", "created_at"),
        Index(
            "ix_notifications_unread",
            "user_id",
            postgresql_where=text("read_at IS NULL AND deleted_at IS NULL"),
            sqlite_where=text("read_at IS NULL AND deleted_at IS NULL"),
        ),
    )


class MessageTemplate(Base):
    """One version of a template for a key, channel and locale. Editing adds a version."""

    __tablename__ = "message_templates"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(16))
    locale: Mapped[str] = mapped_column(String(35), default="en", server_default=text("'en'"))
    version: Mapped[int] = mapped_column(Integer)
    subject: Mapped[str | None] = mapped_column(Text)
    text_body: Mapped[str | None] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    sms_body: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str | None] = mapped_column(Text)
    action_url: Mapped[str | None] = mapped_column(Text)
    webhook_payload: Mapped[str | None] = mapped_column(Text)
    sample_data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: Email versions: a tracking pixel, and links through the click redirect (revision 0019).
    track_opens: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    track_clicks: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    is_current: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    deleted_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("key", "channel", "locale", "version", name="uq_message_templates_version"),
        Index("ix_message_templates_key_current", "key", "channel", "locale", "is_current"),
    )


class NotificationRule(Base):
    """When an event of ``event_type`` matches ``conditions``, send on ``channels`` with ``template_key``."""

    __tablename__ = "notification_rules"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(255))
    channels: Mapped[list[Any]] = mapped_column(default=list)
    template_key: Mapped[str | None] = mapped_column(String(255))
    conditions: Mapped[list[Any]] = mapped_column(default=list)
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    critical: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    #: Its messages are never tracked, whatever the template asks (revision 0022).
    transactional: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    delay_ms: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    #: Escalation steps, first to last (see shared/events/escalation.py); None: ``channels``.
    steps: Mapped[list[Any] | None] = mapped_column(JSONDoc)
    #: ``{"window": "10m", "key": "data.orderId", "maxItems": 50}`` (see shared/events/digests.py)
    digest: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    #: ``{"limit": 3, "per": "1h", "then": "digest"}``
    throttle: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    #: Where its chat messages go: ``{"service": "slack", "channel": "C…"}`` or a sealed
    #: ``webhookUrl``; None: each user's own chat contacts (revision 0024).
    chat: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_notification_rules_event_type_active", "event_type", "active"),)


#: The predicate of the open digests' unique index (one open digest per rule and key); an
#: upsert names the index by it (``ON CONFLICT … WHERE``).
OPEN_BUCKET = "state = 'open'"


class DigestBucket(Base):
    """One digest window of a rule for one key: open while it collects, closed once sent."""

    __tablename__ = "digest_buckets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    #: No foreign key: a bucket whose rule was removed closes without a message.
    rule_id: Mapped[str] = mapped_column(String(36))
    user_id: Mapped[str | None] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(255))
    digest_key: Mapped[str] = mapped_column(String(512))
    state: Mapped[str] = mapped_column(String(16))
    closes_at: Mapped[datetime] = mapped_column()
    item_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    max_items: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column()
    #: Why a ``failed`` digest could not be closed (revision 0015).
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index(
            "uq_digest_buckets_open_key",
            "rule_id",
            "digest_key",
            unique=True,
            postgresql_where=text(OPEN_BUCKET),
            sqlite_where=text(OPEN_BUCKET),
        ),
        Index("ix_digest_buckets_state_closes_at", "state", "closes_at"),
    )


class DigestItem(Base):
    """One event collected in a digest window."""

    __tablename__ = "digest_items"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    bucket_id: Mapped[str] = mapped_column(String(36))
    event_id: Mapped[str] = mapped_column(String(36))
    user_id: Mapped[str | None] = mapped_column(String(255))
    data: Mapped[dict[str, Any]] = mapped_column()
    occurred_at: Mapped[datetime] = mapped_column()

    __table_args__ = (UniqueConstraint("bucket_id", "event_id", name="uq_digest_items_bucket_event"),)


class WebhookConfiguration(Base):
    """A subscriber endpoint: where events go, signed with its own secret."""

    __tablename__ = "webhook_configurations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    #: Event types it receives; empty means all.
    event_types: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    secret: Mapped[str] = mapped_column(Text)
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column()
    rate_limit_per_second: Mapped[int | None] = mapped_column(Integer)
    max_retries: Mapped[int | None] = mapped_column(Integer)
    retry_schedule_ms: Mapped[list[Any] | None] = mapped_column(JSONDoc)
    ordered: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    failing_since: Mapped[datetime | None] = mapped_column()
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    disabled_at: Mapped[datetime | None] = mapped_column()
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    #: Told by email when the endpoint gets disabled (revision 0004).
    owner_email: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_webhook_configurations_active", "active"),)


class MessageReceipt(Base):
    """Something a provider said about a message after accepting it (revision 0016)."""

    __tablename__ = "message_receipts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    message_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("notification_logs.id", ondelete="CASCADE", name="fk_message_receipts_message")
    )
    user_id: Mapped[str | None] = mapped_column(String(255))
    #: The normalized word (``delivered``, ``undelivered`` …); ``code``: the provider's own.
    type: Mapped[str] = mapped_column(String(32))
    code: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    provider: Mapped[str] = mapped_column(String(32))
    #: The same receipt heard twice (a replayed callback) is one row.
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    occurred_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_message_receipts_message_id", "message_id", "occurred_at"),)


class EmailSuppression(Base):
    """An address no email goes to any more: it bounced hard, or its owner complained
    (revision 0017). Lowercased, as the email workers compare it."""

    __tablename__ = "email_suppressions"

    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    #: ``hard_bounce`` or ``complaint``.
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    #: The message whose bounce or complaint put it here.
    message_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDeliveryLog(Base):
    """One row per HTTP attempt of a webhook message."""

    __tablename__ = "webhook_delivery_logs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    notification_log_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("notification_logs.id", ondelete="CASCADE")
    )
    configuration_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("webhook_configurations.id", ondelete="SET NULL")
    )
    attempt: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(Text)
    request_headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    request_body: Mapped[str | None] = mapped_column(Text)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    response_body: Mapped[str | None] = mapped_column(Text)
    error_class: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float | None] = mapped_column()
    #: Phases of the attempt in ms: connect (with DNS), tls, first_byte (revision 0004).
    timings: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    success: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_webhook_delivery_logs_configuration_id_created_at", "configuration_id", "created_at"),
        Index("ix_webhook_delivery_logs_notification_log_id", "notification_log_id"),
        Index("ix_webhook_delivery_logs_configuration_id_id", "configuration_id", "id"),
    )


class EventLog(Base):
    """A system event as received, and what processing it produced."""

    __tablename__ = "event_logs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str | None] = mapped_column(String(255))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    #: As on ``notification_logs``: whose key, and the request that first used it (revision 0007).
    idempotency_scope: Mapped[str] = mapped_column(String(64), default="", server_default=text("''"))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    matched_rules: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column()
    #: When a queued event presumed lost by the broker was last published again.
    rescued_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        UniqueConstraint("idempotency_key", "idempotency_scope", name="uq_event_logs_idempotency_scope_key"),
        Index("ix_event_logs_event_type_created_at", "event_type", "created_at"),
        Index(
            "ix_event_logs_queued_created_at",
            "created_at",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
    )


class UserContact(Base):
    """Where a user is reached, as the host application last told us (for event rules)."""

    __tablename__ = "user_contacts"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    email: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(String(32))
    locale: Mapped[str | None] = mapped_column(String(35))
    #: The user's Slack member id: the bot posts to them directly (revision 0024).
    slack_user_id: Mapped[str | None] = mapped_column(String(32))
    #: Incoming webhook URLs are credentials: stored sealed (:mod:`shared.webhooks.secretbox`).
    slack_webhook_url: Mapped[str | None] = mapped_column(Text)
    teams_webhook_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PushTargetRow(Base):
    """A device of a user that push notifications reach: a browser's push subscription, or
    an app's FCM or APNs device token (revision 0024)."""

    __tablename__ = "push_targets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255))
    #: ``web``, ``fcm`` or ``apns``.
    kind: Mapped[str] = mapped_column(String(8))
    #: The subscription's endpoint URL (web) or the device token.
    token: Mapped[str] = mapped_column(Text)
    p256dh: Mapped[str | None] = mapped_column(Text)
    auth: Mapped[str | None] = mapped_column(Text)
    #: The app (bundle id / package name) the token belongs to.
    app_id: Mapped[str | None] = mapped_column(String(255))
    #: What the device calls itself (``Firefox on Linux``), for the user's list.
    label: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_success_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        # A device belongs to whoever registered it last: registering it again moves it.
        UniqueConstraint("kind", "token", name="uq_push_targets_kind_token"),
        Index("ix_push_targets_user_id", "user_id", "created_at"),
    )


class PendingPublish(Base):
    """An accepted message or event whose broker publish has not been confirmed yet.

    Written in the same transaction as the row it names and removed once the broker confirmed
    the publish: one left behind past PUBLISH_RELAY_AFTER means the accepting process died
    in between, and the scheduler publishes it (:mod:`shared.relay`)."""

    __tablename__ = "pending_publishes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    #: ``message`` (a ``notification_logs`` row) or ``event`` (an ``event_logs`` row).
    kind: Mapped[str] = mapped_column(String(16))
    #: The queue to publish on (the channel's, or ``events``).
    queue: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_pending_publishes_created_at", "created_at"),)


class CreationKey(Base):
    """An ``Idempotency-Key`` a caller sent when creating a template, rule or webhook endpoint,
    and what that request created: the same key with the same request is answered with that
    resource again instead of a second one (sends keep theirs on ``notification_logs``)."""

    __tablename__ = "creation_idempotency_keys"

    idempotency_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    #: Whose key it is, as on ``notification_logs`` (:mod:`producer.idempotency`).
    idempotency_scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: SHA-256 of the request that first used the key: the same key with another body is refused.
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    #: ``template``, ``rule`` or ``webhook_configuration``, and that row's id.
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AnalyticsEvent(Base):
    """Something that happened to a message, not yet counted: written by triggers on
    ``notification_logs`` and ``message_receipts`` (revision 0020), emptied by the folder."""

    __tablename__ = "analytics_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(36))
    #: A status (``sent``), or a receipt's type, ``.bot`` added for a scanner's.
    measure: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column()


class AnalyticsCounted(Base):
    """Which measures of a message are counted already (a bit each, :mod:`shared.analytics`)."""

    __tablename__ = "analytics_counted"

    message_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    counted: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column()


#: What the rollups are grouped by, and what they count (revision 0020).
DIMENSIONS = ("channel", "template", "rule", "event_type", "experiment", "variant", "provider")
COUNTERS = (
    "sent",
    "delivered",
    "failed",
    "bounced",
    "complained",
    "opened",
    "clicked",
    "read",
    "seen",
    "unsubscribed",
    "bot_opened",
    "bot_clicked",
)


class _Rollup:
    bucket: Mapped[datetime] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(255), primary_key=True, server_default=text("''"))
    template: Mapped[str] = mapped_column(String(255), primary_key=True, server_default=text("''"))
    rule: Mapped[str] = mapped_column(String(255), primary_key=True, server_default=text("''"))
    event_type: Mapped[str] = mapped_column(String(255), primary_key=True, server_default=text("''"))
    experiment: Mapped[str] = mapped_column(String(255), primary_key=True, server_default=text("''"))
    variant: Mapped[str] = mapped_column(String(255), primary_key=True, server_default=text("''"))
    provider: Mapped[str] = mapped_column(String(255), primary_key=True, server_default=text("''"))
    sent: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    delivered: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    failed: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    bounced: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    complained: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    opened: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    clicked: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    read: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    seen: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    unsubscribed: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    bot_opened: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    bot_clicked: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    #: Counts per bucket of milliseconds on a logarithmic scale (shared.analytics), packed
    #: into one integer (shared.db.histograms).
    time_to_deliver: Mapped[int] = mapped_column(Histogram())
    time_to_read: Mapped[int] = mapped_column(Histogram())


class AnalyticsHourly(_Rollup, Base):
    """Counts per UTC hour and dimensions, kept current by the folder."""

    __tablename__ = "analytics_hourly"
    __table_args__ = (
        Index(
            "ix_analytics_hourly_experiment",
            "experiment",
            "variant",
            postgresql_where=text("experiment <> ''"),
            sqlite_where=text("experiment <> ''"),
        ),
    )


class AnalyticsDaily(_Rollup, Base):
    """Counts per UTC day and dimensions: what a query of days or weeks reads."""

    __tablename__ = "analytics_daily"
    __table_args__ = (
        Index(
            "ix_analytics_daily_experiment",
            "experiment",
            "variant",
            postgresql_where=text("experiment <> ''"),
            sqlite_where=text("experiment <> ''"),
        ),
    )


class Experiment(Base):
    """Variants of one template (key, channel, locale) and their weights (revision 0020)."""

    __tablename__ = "experiments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    template_key: Mapped[str] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(16))
    locale: Mapped[str] = mapped_column(String(35))
    #: The template version current when it started: what the control renders.
    template_version: Mapped[int] = mapped_column(Integer)
    #: ``running``, ``stopped`` (results kept, nobody assigned) or ``concluded``.
    status: Mapped[str] = mapped_column(String(16))
    #: What counts as success: ``opened``, ``clicked``, ``read`` or ``delivered``.
    metric: Mapped[str] = mapped_column(String(16))
    control: Mapped[str] = mapped_column(String(64))
    #: ``[{"name": "b", "weight": 50, "parts": {"subject": "…"}}, …]``
    variants: Mapped[list[Any]] = mapped_column()
    confidence: Mapped[float] = mapped_column(Float)
    min_sample: Mapped[int] = mapped_column(Integer)
    auto_promote: Mapped[bool] = mapped_column(Boolean)
    winner: Mapped[str | None] = mapped_column(String(64))
    #: The template version the winner was saved as.
    promoted_version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        Index(
            "uq_experiments_running",
            "template_key",
            "channel",
            "locale",
            unique=True,
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
    )
