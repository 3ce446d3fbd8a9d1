"""Settings: one typed object read from the environment (and an optional ``.env``).

Every real component is switched on by its URL; an unset URL means the embedded default
(SQLite under ``./var/``, an in-process broker, in-process rate limiting and pub/sub).
The product brief's variable names are used exactly; durations it gives in
milliseconds stay in milliseconds. Reading settings has no side effects beyond
parsing: directories and dev credentials are created by :func:`ensure_dev_credentials`
when a command starts, never at import time.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from shared import verp
from shared.channels import Channel
from shared.chat_settings import ChatSettings
from shared.envvars import parse_bool, parse_csv, parse_int
from shared.errors import ConfigError
from shared.gateway_settings import GatewayServerSettings
from shared.netguard import AddressPolicy
from shared.provider_settings import HttpSmsGateway, ProviderSettings, SmtpRelay, TwilioAccount
from shared.push_settings import PushSettings
from shared.ratelimit_settings import RateLimitSettings
from shared.webhooks.settings import WebhookSettings

#: Where the embedded defaults keep their files (SQLite database, outbox, dev credentials).
DEFAULT_VAR_DIR = Path("var")

#: Largest webhook payload / email body we accept, in bytes (the brief's "oversized payload").
DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024

#: Delays up to this long wait in the broker's delay queue; longer ones are persisted in
#: PostgreSQL and re-enqueued by the scheduler, because RabbitMQ redelivers a message held
#: unacknowledged past its consumer_timeout (30 min) and Dramatiq keeps delayed messages in
#: worker memory.
DEFAULT_BROKER_DELAY_LIMIT_MS = 60_000

#: How long a worker owns a message it claimed. A redelivered copy of a message still under a
#: live lease waits for the lease to run out instead of sending twice; a crashed worker's
#: claim expires after this long and the message is sent by whoever holds it next.
DEFAULT_DELIVERY_LEASE_MS = 60_000

#: A message still queued this long after its planned time, or claimed by a worker whose lease
#: ran out this long ago, is assumed lost by the broker (a crash between the row insert and
#: the publish, a failed retry re-enqueue) and is published again. Claims make the extra copy
#: harmless when the original was not lost after all.
DEFAULT_RESCUE_AFTER_MS = 15 * 60_000

#: The locale a template falls back to when it has no version in the message's locale.
DEFAULT_TEMPLATE_LOCALE = "en"

#: A template naming a variable the message's data lacks fails that message (``{{#if}}`` and
#: the ``default`` helper still treat a missing value as empty). pybars itself renders "".
DEFAULT_TEMPLATE_STRICT = True

#: CPU time one message's template render may use, in milliseconds (all parts together):
#: a render over it fails the message for good. Real templates need well under 10 ms.
DEFAULT_TEMPLATE_RENDER_TIMEOUT_MS = 250

#: Output one message's template render may produce, in bytes (all parts together), checked
#: as the render grows; the channel's own limits (SMS length, subject…) apply on top.
DEFAULT_TEMPLATE_MAX_OUTPUT_BYTES = 1024 * 1024

#: An accepted row whose publish is not confirmed this long after its commit is published by
#: the scheduler: a confirm takes milliseconds, so only a process that died in between leaves
#: one; a few seconds keep the relay from racing a slow but living publisher.
DEFAULT_PUBLISH_RELAY_AFTER_MS = 5_000
DEFAULT_SCHEDULER_LOOKAHEAD_MS = 5_000

#: How far ahead a send may be scheduled (``sendAt``/``delayMs``), in milliseconds: a year
#: covers yearly reminders, and a bound keeps a typo in the year from parking a message for
#: centuries.
DEFAULT_SCHEDULE_MAX_AHEAD_MS = 365 * 24 * 3_600_000

#: In-app notifications older than this many days are purged (0 keeps them forever).
DEFAULT_IN_APP_RETENTION_DAYS = 90

#: How often the retention job looks for expired notifications, in milliseconds.
DEFAULT_IN_APP_RETENTION_INTERVAL_MS = 3_600_000

#: Open notification streams one user may hold on one gateway process; a browser opens one
#: per tab, so this is generous for people and still stops a runaway client.
DEFAULT_SSE_MAX_CONNECTIONS_PER_USER = 10

#: Idle time after which a stream sends a comment line, in milliseconds, so proxies and load
#: balancers (often 30-60 s idle timeouts) keep the connection open.
DEFAULT_SSE_HEARTBEAT_MS = 15_000


#: Variables that switch a real shared service on. With any of them set this is a
#: deployment, not the embedded dev mode: WEBHOOK_ALLOW_PRIVATE_NETWORKS then defaults to
#: false, because a webhook endpoint naming an internal address would let a caller reach
#: (and through ``.../test`` and the delivery log, read from) services inside the network.
REAL_SERVICE_VARIABLES = ("DATABASE_URL", "MIGRATION_DATABASE_URL", "BROKER_URL", "REDIS_URL")


def _private_networks(get: Callable[[str], str | None]) -> tuple[bool, str]:
    """WEBHOOK_ALLOW_PRIVATE_NETWORKS as it applies, and why: an explicit value always wins;
    unset, it is true only in the embedded dev mode (no real service configured)."""
    raw = get("WEBHOOK_ALLOW_PRIVATE_NETWORKS")
    if raw is not None:
        return parse_bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", raw), "set by WEBHOOK_ALLOW_PRIVATE_NETWORKS"
    configured = [name for name in REAL_SERVICE_VARIABLES if get(name) is not None]
    if configured:
        return False, f"the default once real services are configured ({', '.join(configured)} set)"
    return True, "the default of the embedded dev mode (no DATABASE_URL, BROKER_URL or REDIS_URL set)"


def _postgres_driver(url: str | None) -> str | None:
    """psycopg 3 is the driver we ship; accept the URL libpq users write."""
    if url is not None and url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


@dataclass(frozen=True)
class RetryPolicy:
    """How a channel retries temporary failures: ``max_retries`` after the first attempt,
    exponential backoff from ``base_delay_ms`` (doubling) capped at ``max_delay_ms``, ±20% jitter."""

    max_retries: int
    base_delay_ms: int
    max_delay_ms: int

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1


@dataclass(frozen=True)
class Settings:
    """Everything the gateway, producer and workers read from the environment."""

    database_url: str
    broker_url: str | None
    redis_url: str | None
    # Secrets stay out of repr(), which tracebacks and debuggers print.
    api_keys: tuple[str, ...] = field(repr=False)
    user_token_secret: str = field(repr=False)
    webhook_allow_private_networks: bool
    var_dir: Path

    email_service: str
    email_host: str | None
    email_port: int
    email_secure: bool
    email_user: str | None
    email_password: str | None = field(repr=False)
    email_from: str
    email_timeout_ms: int
    email_pool_size: int

    sms_provider: str
    twilio_account_sid: str | None
    twilio_auth_token: str | None = field(repr=False)
    twilio_phone_number: str | None
    twilio_api_base: str
    sms_timeout_ms: int

    webhook_timeout_ms: int
    webhook_secret: str = field(repr=False)

    email_retry: RetryPolicy
    sms_retry: RetryPolicy
    webhook_retry: RetryPolicy
    in_app_retry: RetryPolicy
    push_retry: RetryPolicy
    chat_retry: RetryPolicy

    max_payload_bytes: int
    broker_delay_limit_ms: int
    delivery_lease_ms: int
    scheduler_interval_ms: int
    rescue_after_ms: int
    log_level: str
    #: PUBLISH_RELAY_AFTER: how long an accepted row may wait for its confirmed publish before
    #: the scheduler publishes it (the accepting process died in between).
    publish_relay_after_ms: int = DEFAULT_PUBLISH_RELAY_AFTER_MS
    #: SCHEDULER_LOOKAHEAD: how far ahead of their time a scheduler takes scheduled sends and
    #: parked messages, to publish them when due without reading the database then (0: at
    #: the first tick after their time).
    scheduler_lookahead_ms: int = DEFAULT_SCHEDULER_LOOKAHEAD_MS
    #: SCHEDULE_MAX_AHEAD: the latest a send may be scheduled, from now.
    schedule_max_ahead_ms: int = DEFAULT_SCHEDULE_MAX_AHEAD_MS
    in_app_retention_days: int = DEFAULT_IN_APP_RETENTION_DAYS
    in_app_retention_interval_ms: int = DEFAULT_IN_APP_RETENTION_INTERVAL_MS
    sse_max_connections_per_user: int = DEFAULT_SSE_MAX_CONNECTIONS_PER_USER
    sse_heartbeat_ms: int = DEFAULT_SSE_HEARTBEAT_MS
    #: Browser origins allowed to call the gateway cross-origin; none (CORS closed) by default.
    cors_allowed_origins: tuple[str, ...] = ()
    #: INBOX_FRAME_ANCESTORS: origins whose pages may frame the ``/inbox`` page; none (the page
    #: refuses every frame) by default.
    inbox_frame_ancestors: tuple[str, ...] = ()
    #: ``Strict-Transport-Security`` max-age in seconds; 0 sends no such header, because only
    #: the deployment knows whether clients reach us over TLS (often through a proxy).
    hsts_max_age_seconds: int = 0

    template_default_locale: str = DEFAULT_TEMPLATE_LOCALE
    template_strict: bool = DEFAULT_TEMPLATE_STRICT
    template_render_timeout_ms: int = DEFAULT_TEMPLATE_RENDER_TIMEOUT_MS
    template_max_output_bytes: int = DEFAULT_TEMPLATE_MAX_OUTPUT_BYTES
    #: Migrations run as the tables' owner; the application's own role (DATABASE_URL) must
    #: not own them, or PostgreSQL row-level security would not apply to it.
    migration_database_url: str | None = None

    #: USER_TOKEN_PREVIOUS_SECRETS: secrets user tokens are still accepted with while their
    #: issuer moves to USER_TOKEN_SECRET (rotation).
    user_token_previous_secrets: tuple[str, ...] = field(default=(), repr=False)
    #: USER_TOKEN_AUDIENCE / USER_TOKEN_ISSUER: when set, a user token must carry exactly
    #: this ``aud`` (one of its values) / ``iss``; unset, the claim is not required.
    user_token_audience: str | None = None
    user_token_issuer: str | None = None
    #: PUBLIC_BASE_URL: the gateway's address as providers reach it from outside (their
    #: status callbacks); unset, none is asked for.
    public_base_url: str | None = None
    #: UNSUBSCRIBE_SECRET signs one-click unsubscribe links (with PUBLIC_BASE_URL; unset, no
    #: email carries one); UNSUBSCRIBE_LINK_DAYS: how long a link works.
    unsubscribe_secret: str | None = field(default=None, repr=False)
    unsubscribe_link_days: int = 60
    #: EMAIL_BOUNCE_ADDRESS: the return path; each email's envelope sender is its VERP form
    #: (``local+<message id>@domain``, :mod:`shared.verp`). Unset, the sender is EMAIL_FROM's.
    email_bounce_address: str | None = None
    #: TRACKING_SECRET seals tracking pixels and click redirects (with PUBLIC_BASE_URL; unset,
    #: nothing is tracked); TRACKING_BOT_WINDOW: an open or click this soon after the email
    #: was sent is a mail scanner's, counted apart.
    tracking_secret: str | None = field(default=None, repr=False)
    tracking_bot_window_ms: int = 2_000

    #: Why ``webhook_allow_private_networks`` has its value (logged at start-up).
    webhook_private_networks_reason: str = "set by WEBHOOK_ALLOW_PRIVATE_NETWORKS"
    #: Configured webhook endpoints: retry schedule, secrets, SSRF allow-list, health.
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    #: Gateway budgets per endpoint group and credential; per-recipient budgets of workers.
    rate_limits: RateLimitSettings = field(default_factory=RateLimitSettings)
    #: What the gateway's HTTP server allows a client: header and body deadlines, connections.
    gateway_server: GatewayServerSettings = field(default_factory=GatewayServerSettings)
    #: Providers after the first of each channel (failover), and how their health is judged.
    providers: ProviderSettings = field(default_factory=ProviderSettings)
    #: Web push (VAPID), Firebase Cloud Messaging and APNs credentials (the ``push`` channel).
    push: PushSettings = field(default_factory=PushSettings)
    #: Slack's bot token (the ``chat`` channel; webhook URLs need none).
    chat: ChatSettings = field(default_factory=ChatSettings)

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url is None

    @property
    def is_production(self) -> bool:
        """True when any real shared component is configured: dev conveniences are off."""
        return self.broker_url is not None or not self.database_url.startswith("sqlite")

    def retry_policy(self, channel: Channel) -> RetryPolicy:
        return {
            Channel.EMAIL: self.email_retry,
            Channel.SMS: self.sms_retry,
            Channel.WEBHOOK: self.webhook_retry,
            Channel.IN_APP: self.in_app_retry,
            Channel.PUSH: self.push_retry,
            Channel.CHAT: self.chat_retry,
        }[channel]

    @property
    def smtp_relays(self) -> tuple[SmtpRelay, ...]:
        """EMAIL_HOST's relay, then EMAIL_FALLBACK_PROVIDERS; none without EMAIL_HOST."""
        if self.email_host is None:
            return ()
        first = SmtpRelay(
            name=self.providers.email_name or self.email_host,
            host=self.email_host,
            port=self.email_port,
            secure=self.email_secure,
            user=self.email_user,
            password=self.email_password,
        )
        return (first, *self.providers.email_fallbacks)

    @property
    def sms_providers(self) -> tuple[TwilioAccount | HttpSmsGateway, ...]:
        """The TWILIO_* account, then SMS_FALLBACK_PROVIDERS; none without Twilio credentials."""
        if not (self.twilio_account_sid and self.twilio_auth_token):
            return ()
        first = TwilioAccount(
            name=self.providers.sms_name,
            account_sid=self.twilio_account_sid,
            auth_token=self.twilio_auth_token,
            phone_number=self.twilio_phone_number or "",
            api_base=self.twilio_api_base,
        )
        return (first, *self.providers.sms_fallbacks)

    @property
    def twilio_accounts(self) -> tuple[TwilioAccount, ...]:
        """The Twilio accounts among the SMS providers (their status callbacks are ours)."""
        return tuple(p for p in self.sms_providers if isinstance(p, TwilioAccount))

    @property
    def address_policy(self) -> AddressPolicy:
        """Where webhooks may connect: WEBHOOK_ALLOW_PRIVATE_NETWORKS and WEBHOOK_ALLOWED_SUBNETS."""
        return AddressPolicy(
            allow_private=self.webhook_allow_private_networks, allowed=self.webhooks.allowed_subnets
        )

    @property
    def owner_database_url(self) -> str:
        """Where migrations run: ``MIGRATION_DATABASE_URL``, else ``DATABASE_URL``."""
        return self.migration_database_url or self.database_url

    @property
    def outbox_dir(self) -> Path:
        return self.var_dir / "outbox"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)

        def get(name: str, default: str | None = None) -> str | None:
            value = env.get(name)
            return value if value not in (None, "") else default

        def integer(name: str, default: int | str, *, minimum: int = 0) -> int:
            return parse_int(name, get(name, str(default)) or "", minimum=minimum)

        var_dir = Path(get("KAI_VAR_DIR", str(DEFAULT_VAR_DIR)) or DEFAULT_VAR_DIR)
        database_url = _postgres_driver(get("DATABASE_URL")) or f"sqlite:///{var_dir / 'kai-messaging.db'}"

        broker_url = get("BROKER_URL")
        if broker_url is not None and not broker_url.startswith(("amqp://", "amqps://")):
            raise ConfigError(f"BROKER_URL must be an amqp:// or amqps:// URL, got {broker_url!r}")
        redis_url = get("REDIS_URL")
        if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"REDIS_URL must be a redis:// URL, got {redis_url!r}")

        def policy(prefix: str, retries: int, base: int, cap: int) -> RetryPolicy:
            return RetryPolicy(
                max_retries=integer(f"{prefix}_MAX_RETRIES", retries),
                base_delay_ms=integer(f"{prefix}_RETRY_DELAY", base, minimum=1),
                max_delay_ms=integer(f"{prefix}_MAX_RETRY_DELAY", cap, minimum=1),
            )

        allow_private, private_reason = _private_networks(get)
        email_secure = parse_bool("EMAIL_SECURE", get("EMAIL_SECURE", "false") or "false")
        email_port = integer("EMAIL_PORT", "465" if email_secure else "587", minimum=1)
        email_service = (get("EMAIL_SERVICE", "smtp") or "smtp").lower()
        if email_service != "smtp":
            raise ConfigError(f"EMAIL_SERVICE {email_service!r} is not supported (supported: smtp)")
        sms_provider = (get("SMS_PROVIDER", "twilio") or "twilio").lower()
        if sms_provider != "twilio":
            raise ConfigError(f"SMS_PROVIDER {sms_provider!r} is not supported (supported: twilio)")
        providers = ProviderSettings.from_env(get)
        # A fallback is tried after the first provider; without a first one nothing is sent
        # (the outbox takes the messages), which would hide the fallback silently.
        if providers.email_fallbacks and get("EMAIL_HOST") is None:
            raise ConfigError("EMAIL_FALLBACK_PROVIDERS needs EMAIL_HOST: it names the first provider")
        if providers.sms_fallbacks and not (get("TWILIO_ACCOUNT_SID") and get("TWILIO_AUTH_TOKEN")):
            raise ConfigError(
                "SMS_FALLBACK_PROVIDERS needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN: "
                "they name the first provider"
            )

        return cls(
            database_url=database_url,
            broker_url=broker_url,
            redis_url=redis_url,
            api_keys=parse_csv(get("API_KEYS", "") or ""),
            user_token_secret=get("USER_TOKEN_SECRET", "") or "",
            user_token_previous_secrets=parse_csv(get("USER_TOKEN_PREVIOUS_SECRETS", "") or ""),
            user_token_audience=get("USER_TOKEN_AUDIENCE"),
            user_token_issuer=get("USER_TOKEN_ISSUER"),
            webhook_allow_private_networks=allow_private,
            webhook_private_networks_reason=private_reason,
            var_dir=var_dir,
            email_service=email_service,
            email_host=get("EMAIL_HOST"),
            email_port=email_port,
            email_secure=email_secure,
            email_user=get("EMAIL_USER"),
            email_password=get("EMAIL_PASSWORD"),
            email_from=get("EMAIL_FROM", "noreply@localhost") or "noreply@localhost",
            email_timeout_ms=integer("EMAIL_TIMEOUT", "10000", minimum=1),
            email_pool_size=integer("EMAIL_POOL_SIZE", "4", minimum=1),
            sms_provider=sms_provider,
            twilio_account_sid=get("TWILIO_ACCOUNT_SID"),
            twilio_auth_token=get("TWILIO_AUTH_TOKEN"),
            twilio_phone_number=get("TWILIO_PHONE_NUMBER"),
            twilio_api_base=(get("TWILIO_API_BASE", "https://api.twilio.com") or "").rstrip("/"),
            sms_timeout_ms=integer("SMS_TIMEOUT", "10000", minimum=1),
            webhook_timeout_ms=integer("WEBHOOK_TIMEOUT", "5000", minimum=1),
            webhook_secret=get("WEBHOOK_SECRET", "") or "",
            email_retry=policy("EMAIL", 5, 5_000, 3_600_000),
            sms_retry=policy("SMS", 5, 5_000, 3_600_000),
            webhook_retry=policy("WEBHOOK", 3, 1_000, 3_600_000),
            in_app_retry=policy("IN_APP", 5, 1_000, 600_000),
            push_retry=policy("PUSH", 5, 5_000, 3_600_000),
            chat_retry=policy("CHAT", 5, 5_000, 3_600_000),
            max_payload_bytes=integer("MAX_PAYLOAD_BYTES", DEFAULT_MAX_PAYLOAD_BYTES, minimum=1),
            broker_delay_limit_ms=integer("BROKER_DELAY_LIMIT", DEFAULT_BROKER_DELAY_LIMIT_MS),
            delivery_lease_ms=integer("DELIVERY_LEASE", DEFAULT_DELIVERY_LEASE_MS, minimum=100),
            scheduler_interval_ms=integer("SCHEDULER_INTERVAL", "500", minimum=10),
            rescue_after_ms=integer("RESCUE_AFTER", DEFAULT_RESCUE_AFTER_MS, minimum=1000),
            publish_relay_after_ms=integer(
                "PUBLISH_RELAY_AFTER", DEFAULT_PUBLISH_RELAY_AFTER_MS, minimum=100
            ),
            scheduler_lookahead_ms=integer("SCHEDULER_LOOKAHEAD", DEFAULT_SCHEDULER_LOOKAHEAD_MS),
            schedule_max_ahead_ms=integer("SCHEDULE_MAX_AHEAD", DEFAULT_SCHEDULE_MAX_AHEAD_MS, minimum=1),
            log_level=(get("LOG_LEVEL", "INFO") or "INFO").upper(),
            template_default_locale=get("TEMPLATE_DEFAULT_LOCALE", DEFAULT_TEMPLATE_LOCALE)
            or DEFAULT_TEMPLATE_LOCALE,
            template_strict=parse_bool("TEMPLATE_STRICT", get("TEMPLATE_STRICT", "true") or "true"),
            template_render_timeout_ms=integer(
                "TEMPLATE_RENDER_TIMEOUT_MS", DEFAULT_TEMPLATE_RENDER_TIMEOUT_MS, minimum=1
            ),
            template_max_output_bytes=integer(
                "TEMPLATE_MAX_OUTPUT_BYTES", DEFAULT_TEMPLATE_MAX_OUTPUT_BYTES, minimum=1
            ),
            migration_database_url=_postgres_driver(get("MIGRATION_DATABASE_URL")),
            public_base_url=_public_base_url(get("PUBLIC_BASE_URL")),
            unsubscribe_secret=_signing_secret(get("UNSUBSCRIBE_SECRET"), "UNSUBSCRIBE_SECRET"),
            unsubscribe_link_days=integer("UNSUBSCRIBE_LINK_DAYS", "60", minimum=1),
            tracking_secret=_signing_secret(get("TRACKING_SECRET"), "TRACKING_SECRET"),
            tracking_bot_window_ms=integer("TRACKING_BOT_WINDOW", "2000"),
            email_bounce_address=verp.check(bounce) if (bounce := get("EMAIL_BOUNCE_ADDRESS")) else None,
            in_app_retention_days=integer("IN_APP_RETENTION_DAYS", DEFAULT_IN_APP_RETENTION_DAYS),
            in_app_retention_interval_ms=integer(
                "IN_APP_RETENTION_INTERVAL", DEFAULT_IN_APP_RETENTION_INTERVAL_MS, minimum=10
            ),
            sse_max_connections_per_user=integer(
                "SSE_MAX_CONNECTIONS_PER_USER", DEFAULT_SSE_MAX_CONNECTIONS_PER_USER, minimum=1
            ),
            sse_heartbeat_ms=integer("SSE_HEARTBEAT_INTERVAL", DEFAULT_SSE_HEARTBEAT_MS, minimum=10),
            cors_allowed_origins=parse_csv(get("CORS_ALLOWED_ORIGINS", "") or ""),
            inbox_frame_ancestors=_origins("INBOX_FRAME_ANCESTORS", get("INBOX_FRAME_ANCESTORS", "") or ""),
            hsts_max_age_seconds=integer("HSTS_MAX_AGE", "0"),
            webhooks=WebhookSettings.from_env(get),
            rate_limits=RateLimitSettings.from_env(get),
            gateway_server=GatewayServerSettings.from_env(get),
            providers=providers,
            push=PushSettings.from_env(get),
            chat=ChatSettings.from_env(get),
        )

    def require_production_secrets(self) -> None:
        """Refuse to serve with generated dev credentials once real components are configured."""
        if not self.is_production:
            return
        missing = [
            name
            for name, value in (
                ("API_KEYS", self.api_keys),
                ("USER_TOKEN_SECRET", self.user_token_secret),
                ("WEBHOOK_SECRET", self.webhook_secret),
            )
            if not value
        ]
        if missing:
            raise ConfigError(
                f"{', '.join(missing)} must be set when BROKER_URL or DATABASE_URL point at real services"
            )


@dataclass(frozen=True)
class DevCredentials:
    api_key: str
    user_token_secret: str
    webhook_secret: str


def ensure_dev_credentials(settings: Settings) -> tuple[Settings, DevCredentials | None]:
    """Fill unset credentials with dev values kept under ``var/`` (stable across restarts, so
    the README's curl examples keep working). Returns the completed settings and the values
    that were generated, if any, so the caller can print them once."""
    if settings.api_keys and settings.user_token_secret and settings.webhook_secret:
        return settings, None
    settings.var_dir.mkdir(parents=True, exist_ok=True)

    def stored(name: str, make: str) -> str:
        path = settings.var_dir / name
        if path.exists():
            return path.read_text().strip()
        path.write_text(make + "\n")
        path.chmod(0o600)
        return make

    creds = DevCredentials(
        api_key=stored("dev-api-key", "kai_dev_" + secrets.token_urlsafe(24)),
        user_token_secret=stored("dev-user-token-secret", secrets.token_urlsafe(32)),
        webhook_secret=stored("dev-webhook-secret", "whsec_" + _b64(secrets.token_bytes(32))),
    )
    from dataclasses import replace

    completed = replace(
        settings,
        api_keys=settings.api_keys or (creds.api_key,),
        user_token_secret=settings.user_token_secret or creds.user_token_secret,
        webhook_secret=settings.webhook_secret or creds.webhook_secret,
    )
    return completed, creds


def startup_settings(settings: Settings) -> Settings:
    """Settings a serving process may start with: dev credentials filled in on the embedded
    defaults (the command line shows the key once it listens), real ones required once
    production services are configured."""
    if settings.is_production:
        settings.require_production_secrets()
        return settings
    completed, _generated = ensure_dev_credentials(settings)
    return completed


def log_webhook_network_policy(settings: Settings) -> None:
    """Say at start-up whether webhooks may reach loopback, private and link-local addresses,
    and why: the default changes with the deployment, and either way it matters (SSRF, or
    receivers on an internal network being refused)."""
    from shared.logging import get_logger

    if settings.webhook_allow_private_networks:
        detail = (
            "Webhook URLs may name loopback, private and link-local addresses "
            "(WEBHOOK_ALLOW_PRIVATE_NETWORKS=true): whoever manages webhook endpoints can reach "
            "internal services"
        )
    else:
        detail = (
            "Webhook URLs resolving to loopback, private or link-local addresses are refused "
            "(WEBHOOK_ALLOW_PRIVATE_NETWORKS=false); allow receivers on internal networks with "
            "WEBHOOK_ALLOWED_SUBNETS, or set WEBHOOK_ALLOW_PRIVATE_NETWORKS=true"
        )
    get_logger(__name__).warning(
        "webhook.private_networks",
        allowed=settings.webhook_allow_private_networks,
        reason=settings.webhook_private_networks_reason,
        detail=detail,
    )


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode()


_settings: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, read once (``.env`` first, the real environment wins)."""
    global _settings
    if _settings is None:
        from dotenv import load_dotenv

        load_dotenv(override=False)
        _settings = Settings.from_env()
    return _settings


def set_settings(settings: Settings | None) -> None:
    """Replace the process-wide settings (start-up code and tests)."""
    global _settings
    _settings = settings


def _public_base_url(raw: str | None) -> str | None:
    """An absolute http(s) URL without a query or fragment, its trailing slash dropped."""
    if not raw or not raw.strip():
        return None
    parts = urlsplit(raw.strip())
    spaced = any(c.isspace() or not c.isprintable() for c in raw.strip())
    if spaced or parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(
            f"PUBLIC_BASE_URL must be an http(s) URL such as https://notify.example.com, got {raw!r}"
        )
    return raw.strip().rstrip("/")


def _origins(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated http(s) origins (scheme, host and optional port), trailing slash dropped.

    They end up in a header (``Content-Security-Policy: frame-ancestors …``), where a stray
    ``;`` or quote would add a directive or a keyword, so anything but a plain origin is refused.
    """
    origins = tuple(origin.rstrip("/") for origin in parse_csv(raw))
    for origin in origins:
        parts = urlsplit(origin)
        plain = all(c.isalnum() or c in ":/.-" for c in origin)
        port = parts.netloc.rpartition(":")[2] if parts.netloc.count(":") == 1 else ""
        if (
            not plain
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path
            or (port != "" and not port.isdigit())
        ):
            raise ConfigError(f"{name} must list origins such as https://app.example.com, got {origin!r}")
    return origins


#: HS256 wants a key at least as long as its hash (RFC 7518, section 3.2).
MIN_UNSUBSCRIBE_SECRET_BYTES = 32


def _signing_secret(raw: str | None, name: str) -> str | None:
    if not raw:
        return None
    if len(raw.encode()) < MIN_UNSUBSCRIBE_SECRET_BYTES:
        raise ConfigError(
            f"{name} must be at least {MIN_UNSUBSCRIBE_SECRET_BYTES} bytes long "
            "(e.g. the output of: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return raw
