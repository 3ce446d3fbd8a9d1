"""The services one chaos run uses, all on loopback: a private PostgreSQL cluster and Redis
(so the run can stop them, and never crowds the machine's own PostgreSQL with connections), a
private RabbitMQ node when the broker is to be restarted or else a virtual host of its own on
the machine's RabbitMQ (dropped at the end), and the peers the workers deliver to: each
email and SMS has a second provider configured (another SMTP relay, another Twilio account)
that the workers fail over to, as a deployment with failover does."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg

from migrations.migrate import upgrade
from shared.db.rls import system_scope
from shared.db.session import dispose_all
from shared.push_targets import SubscriptionInput, register
from tests.chaos.services import Postgres, RabbitMQ, Redis
from tests.sinks.push_service import PushService
from tests.sinks.slack_peer import SlackPeer
from tests.sinks.smtp_sink import SmtpSink
from tests.sinks.twilio_sink import TwilioSink
from tests.sinks.webhook_receiver import WebhookReceiver
from workers.providers.webpush import generate_vapid_keys

AMQP_ADDRESS = "127.0.0.1:5672"
TWILIO_SID = "AC" + "c" * 32
TWILIO_TOKEN = secrets.token_hex(16)
BACKUP_TWILIO_SID = "AC" + "d" * 32
BACKUP_TWILIO_TOKEN = secrets.token_hex(16)

#: How long a killed worker's claim blocks its message (ms): short, so redelivery is quick.
LEASE_MS = 3000
#: Attempts per message: enough that a sink's fault burst is ridden out, not given up on.
MAX_RETRIES = 8
#: First retry delay (ms), doubled per attempt.
RETRY_DELAY_MS = 100
#: The users the load's in-app messages and pushes go to; each has one browser subscribed.
USERS = 50
#: The channels whose retry settings the stack scales down.
CHANNELS = ("EMAIL", "SMS", "WEBHOOK", "IN_APP", "PUSH", "CHAT")
#: Per-request timeout for webhooks (ms); the "slow receiver" fault answers slower than this.
WEBHOOK_TIMEOUT_MS = 2000


@dataclass
class Peers:
    smtp: SmtpSink = field(default_factory=SmtpSink)
    twilio: TwilioSink = field(default_factory=lambda: TwilioSink(TWILIO_SID, TWILIO_TOKEN))
    #: The failover providers, tried when the first ones fail or their circuits are open.
    smtp_backup: SmtpSink = field(default_factory=SmtpSink)
    twilio_backup: TwilioSink = field(
        default_factory=lambda: TwilioSink(BACKUP_TWILIO_SID, BACKUP_TWILIO_TOKEN)
    )
    webhooks: WebhookReceiver | None = None
    #: The users' browsers' push service, and Slack for the chat channel.
    push: PushService = field(default_factory=PushService)
    slack: SlackPeer = field(default_factory=SlackPeer)
    vapid: tuple[str, str] = field(default_factory=generate_vapid_keys)

    def start(self, webhook_secret: str) -> None:
        for peer in (self.smtp, self.twilio, self.smtp_backup, self.twilio_backup, self.push, self.slack):
            peer.start()
        self.webhooks = WebhookReceiver(webhook_secret).start()

    def subscribe_users(self, database_url: str) -> None:
        """One browser per user of the load, for its pushes."""
        with system_scope(database_url) as session:
            for n in range(USERS):
                subscription = self.push.subscribe(application_server_key=self.vapid[1])
                register(session, f"user-{n}", SubscriptionInput.model_validate(subscription.as_json()))

    def stop(self) -> None:
        for peer in (self.smtp, self.twilio, self.smtp_backup, self.twilio_backup, self.push, self.slack):
            peer.stop()
        if self.webhooks is not None:
            self.webhooks.stop()


class Stack:
    """A private database and virtual host, and the peers; ``env`` configures every process."""

    def __init__(self, *, private_broker: bool = False) -> None:
        self.name = f"kai_chaos_{secrets.token_hex(4)}"
        self.webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        self.var = Path(tempfile.mkdtemp(prefix="kai-chaos-"))
        self.peers = Peers()
        self.postgres = Postgres()
        self.redis = Redis()
        self.database_url = self.postgres.url("kai")
        #: A node of its own when the run restarts the broker; else a virtual host on the
        #: machine's RabbitMQ (quicker to set up).
        self.rabbitmq = RabbitMQ() if private_broker else None
        if self.rabbitmq is not None:
            self.broker_url = self.rabbitmq.url
        else:
            self.broker_url = f"amqp://guest:guest@{AMQP_ADDRESS}/{quote(self.name, safe='')}"
        self._made_vhost = False

    def start(self) -> None:
        self.postgres.init()
        with psycopg.connect(self.postgres.admin_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE kai")
        self.redis.start()
        upgrade(self.database_url)
        if self.rabbitmq is not None:
            self.rabbitmq.start()
        else:
            rabbitmqctl("add_vhost", self.name)
            self._made_vhost = True
            rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        self.peers.start(self.webhook_secret)
        self.peers.subscribe_users(self.database_url)

    def stop(self) -> None:
        self.peers.stop()
        dispose_all()
        if self._made_vhost:
            rabbitmqctl("delete_vhost", self.name, check=False)
        if self.rabbitmq is not None:
            self.rabbitmq.remove()
        self.redis.stop()
        self.postgres.remove()
        shutil.rmtree(self.var, ignore_errors=True)

    @property
    def env(self) -> dict[str, str]:
        retries = {f"{c}_MAX_RETRIES": str(MAX_RETRIES) for c in CHANNELS}
        delays = {f"{c}_RETRY_DELAY": str(RETRY_DELAY_MS) for c in CHANNELS}
        return {
            "DATABASE_URL": self.database_url,
            "BROKER_URL": self.broker_url,
            "REDIS_URL": self.redis.url,
            "API_KEYS": "chaos-" + secrets.token_hex(8),
            "USER_TOKEN_SECRET": secrets.token_urlsafe(32),
            "WEBHOOK_SECRET": self.webhook_secret,
            # The webhook peer listens on loopback, refused by default once real services are set.
            "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
            "KAI_VAR_DIR": str(self.var),
            "EMAIL_HOST": self.peers.smtp.host,
            "EMAIL_PORT": str(self.peers.smtp.port),
            "EMAIL_FROM": "KAI Chaos <noreply@kai.test>",
            "TWILIO_ACCOUNT_SID": TWILIO_SID,
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "TWILIO_PHONE_NUMBER": "+15005550006",
            "TWILIO_API_BASE": self.peers.twilio.base_url,
            "VAPID_PRIVATE_KEY": self.peers.vapid[0],
            "VAPID_SUBJECT": "mailto:chaos@kai.test",
            "PUSH_TIMEOUT": "3000",
            "SLACK_BOT_TOKEN": self.peers.slack.token,
            "SLACK_API_BASE": self.peers.slack.api_base,
            "CHAT_TIMEOUT": "3000",
            # The load sends each user and the one Slack channel far more than a person gets.
            "PUSH_RECIPIENT_LIMIT_PER_HOUR": "0",
            "CHAT_RECIPIENT_LIMIT_PER_HOUR": "0",
            "EMAIL_PROVIDER_NAME": "relay-a",
            "EMAIL_FALLBACK_PROVIDERS": json.dumps(
                [
                    {
                        "name": "relay-b",
                        "host": self.peers.smtp_backup.host,
                        "port": self.peers.smtp_backup.port,
                    }
                ]
            ),
            "SMS_FALLBACK_PROVIDERS": json.dumps(
                [
                    {
                        "name": "twilio-b",
                        "accountSid": BACKUP_TWILIO_SID,
                        "authToken": BACKUP_TWILIO_TOKEN,
                        "phoneNumber": "+15005550009",
                        "apiBase": self.peers.twilio_backup.base_url,
                    }
                ]
            ),
            "WEBHOOK_TIMEOUT": str(WEBHOOK_TIMEOUT_MS),
            "EMAIL_TIMEOUT": "3000",
            "SMS_TIMEOUT": "3000",
            "DELIVERY_LEASE": str(LEASE_MS),
            # Scaled down with the lease and the retry delays: a provider's circuit lets a
            # probe through a second after it opened.
            "PROVIDER_BREAKER_COOLDOWN": "1000",
            "SCHEDULER_INTERVAL": "200",
            "LOG_LEVEL": "ERROR",
            **retries,
            **delays,
        }


def rabbitmqctl(*args: str, check: bool = True) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=check, capture_output=True)
