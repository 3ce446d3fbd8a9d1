"""Driving the real fleet: what each channel's pool is given (bench/pools.py runs them), the
producer library filling their queues, and the figures read back from ``notification_logs``.

Throughput is measured by filling a channel's queue while its pool is held, then letting the
pool go and timing the middle 80% of completions (by their recorded ``sent_at`` /
``delivered_at``), so neither the first moments nor the last stragglers count.
"""

from __future__ import annotations

import base64
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench.env import BenchEnv
from bench.limits import webhook_payload
from bench.pools import PoolSpec
from producer.service import NotificationService
from shared import push_targets
from shared.channels import Channel
from shared.db.rls import system_scope
from shared.push_targets import SubscriptionInput, SubscriptionKeys
from workers.providers.webpush import generate_vapid_keys

#: Producer threads in the benchmark process, as an application server might run.
PRODUCER_THREADS = 16
MIB = 1024 * 1024

TWILIO_ACCOUNT_SID = "AC" + "0" * 32
TWILIO_AUTH_TOKEN = "bench-twilio-token"
TWILIO_FROM = "+14155550199"
#: The push pool's user (one browser) and the chat pool's Slack channel (the bot's posts go
#: to the receiver's ``/api/chat.postMessage``, which answers Slack's ``{"ok": true}``).
PUSH_USER = "bench-push-user"
SLACK_CHANNEL = "C0BENCH01"
#: Generated once per run: each push is encrypted for its browser and VAPID-signed for real.
VAPID_PRIVATE_KEY, _VAPID_PUBLIC_KEY = generate_vapid_keys()


def send_fields(channel: Channel, receiver_url: str) -> dict[str, Any]:
    """A typical message of each channel."""
    if channel is Channel.WEBHOOK:
        return {"url": f"{receiver_url}/hook", "payload": webhook_payload()}
    if channel is Channel.EMAIL:
        return {
            "to": "user@example.com",
            "subject": "Welcome to KAI",
            "text": "Thank you for joining our platform!",
            "html": "<p>Thank you for joining our platform!</p>",
        }
    if channel is Channel.SMS:
        return {"to": "+14155550100", "message": "Your verification code is: 123456"}
    if channel is Channel.PUSH:
        return {
            "user_id": PUSH_USER,
            "title": "Your order shipped",
            "body": "It arrives on Friday",
            "url": "/orders/123",
        }
    if channel is Channel.CHAT:
        return {"service": "slack", "to": SLACK_CHANNEL, "text": "Deploy 42 finished"}
    return {"user_id": "user-123", "title": "New Message", "message": "You have a new message from Admin"}


def prepare(env: BenchEnv, channel: Channel, receiver_url: str) -> None:
    """What a channel's messages need in the database besides themselves, after a reset: the
    push user's browser (a subscription whose push service is the receiver)."""
    if channel is not Channel.PUSH:
        return
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    subscription = SubscriptionInput(
        endpoint=f"{receiver_url}/push/bench-browser",
        keys=SubscriptionKeys(p256dh=_b64url(point), auth=_b64url(secrets.token_bytes(16))),
    )
    with system_scope(env.database_url) as session:
        push_targets.register(session, PUSH_USER, subscription)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


#: The first retry's delay of every webhook pool (±20% jitter): short, so the retry rows
#: stay short. Only a failed delivery waits on it, so the throughput rows' pools (which see
#: none) can share it, and the 6.1 pool serves row 7a too.
WEBHOOK_RETRY_DELAY_MS = 200


def channel_env(channel: Channel, *, receiver_url: str, smtp_port: int, threads: int) -> dict[str, str]:
    """Where each channel's provider delivers in the benchmark."""
    if channel is Channel.WEBHOOK:
        return {"WEBHOOK_RETRY_DELAY": str(WEBHOOK_RETRY_DELAY_MS)}
    if channel is Channel.EMAIL:
        # One pooled SMTP connection per worker thread, so threads never queue for one.
        return {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(smtp_port), "EMAIL_POOL_SIZE": str(threads)}
    if channel is Channel.SMS:
        return {
            "TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
            "TWILIO_PHONE_NUMBER": TWILIO_FROM,
            "TWILIO_API_BASE": receiver_url,
        }
    if channel is Channel.PUSH:
        return {"VAPID_PRIVATE_KEY": VAPID_PRIVATE_KEY, "VAPID_SUBJECT": "mailto:bench@kai.test"}
    if channel is Channel.CHAT:
        return {"SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_API_BASE": f"{receiver_url}/api/"}
    return {}


def webhook_pool(processes: int, threads: int, **overrides: str) -> PoolSpec:
    """A webhook pool; each message names its receiver, so one pool serves every receiver."""
    env = {"WEBHOOK_RETRY_DELAY": str(WEBHOOK_RETRY_DELAY_MS), **overrides}
    return PoolSpec.of(Channel.WEBHOOK, processes=processes, threads=threads, env=env)


@dataclass(frozen=True)
class Produced:
    count: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


def produce(
    env: BenchEnv,
    channel: Channel,
    fields: dict[str, Any],
    *,
    count: int,
    time_limit_s: float,
    rate: float | None = None,
) -> Produced:
    """Send up to ``count`` messages from PRODUCER_THREADS threads for at most ``time_limit_s``,
    as fast as possible or paced at ``rate`` per second."""
    service = NotificationService(env.settings())
    started = time.perf_counter()
    deadline = started + time_limit_s
    interval = PRODUCER_THREADS / rate if rate else 0.0
    sent = [0] * PRODUCER_THREADS

    def run(index: int) -> None:
        quota = count // PRODUCER_THREADS + (1 if index < count % PRODUCER_THREADS else 0)
        # Stagger the paced threads so their sends interleave evenly.
        due = started + index * interval / PRODUCER_THREADS
        for _ in range(quota):
            now = time.perf_counter()
            if now > deadline:
                return
            if interval:
                if due > now:
                    time.sleep(due - now)
                due += interval
            service.submit(channel, fields)
            sent[index] += 1

    with ThreadPoolExecutor(PRODUCER_THREADS) as executor:
        list(executor.map(run, range(PRODUCER_THREADS)))
    return Produced(sum(sent), time.perf_counter() - started)


#: Messages per ``send_many`` call.
SEND_MANY_CHUNK = 1000


def produce_many(
    env: BenchEnv, channel: Channel, fields: dict[str, Any], *, count: int, time_limit_s: float
) -> Produced:
    """Send ``count`` messages with ``send_many``, SEND_MANY_CHUNK at a time, from one thread."""
    service = NotificationService(env.settings())
    items = [{"channel": channel.value, **fields}] * SEND_MANY_CHUNK
    started = time.perf_counter()
    sent = 0
    while sent < count and time.perf_counter() - started < time_limit_s:
        results = service.send_many(items[: count - sent])
        sent += sum(1 for r in results if "id" in r)
    return Produced(sent, time.perf_counter() - started)


def steady_rate(finished: list[datetime]) -> float:
    """Completions per second over the middle 80% of ``finished`` (sorted)."""
    n = len(finished)
    if n < 2:
        return 0.0
    low, high = (n // 10, n - 1 - n // 10) if n >= 20 else (0, n - 1)
    span = (finished[high] - finished[low]).total_seconds()
    return (high - low) / span if span > 0 else 0.0


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (unsorted); NaN-free, 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def latencies_ms(env: BenchEnv, channel: Channel) -> list[float]:
    return [(done - created).total_seconds() * 1000 for created, done in env.completions(channel)]
