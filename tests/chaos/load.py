"""Steady mixed load through the producer API, and what each peer received per message."""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from producer.service import NotificationService
from shared.channels import Channel
from tests.chaos.stack import USERS, Peers
from tests.sinks.slack_peer import DEFAULT_CHANNEL as SLACK_CHANNEL

#: Producer threads (the API blocks on the broker's confirm, so concurrency needs threads).
PRODUCERS = 8
#: Channels in the mix, in turn.
MIX = (Channel.EMAIL, Channel.SMS, Channel.WEBHOOK, Channel.IN_APP)
#: Every channel: the worker-kill scenario's mix.
FULL_MIX = (*MIX, Channel.PUSH, Channel.CHAT)


@dataclass
class Accepted:
    """Ids the producer returned, by channel, and the SMS body that identifies each SMS."""

    ids: dict[str, Channel] = field(default_factory=dict)
    sms_bodies: dict[str, str] = field(default_factory=dict)
    #: The text that identifies each push and chat message at its peer.
    bodies: dict[str, str] = field(default_factory=dict)
    #: Sends the producer refused, by exception (not accepted: the caller retries).
    refused: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Load:
    """Sends ``count`` messages at ``rate`` per second from a few threads; ``join`` waits."""

    def __init__(
        self,
        service: NotificationService,
        peers: Peers,
        count: int,
        rate: float,
        mix: tuple[Channel, ...] = MIX,
    ) -> None:
        self.service = service
        self.mix = mix
        self.peers = peers
        self.count = count
        self.rate = rate
        self.accepted = Accepted()
        self._numbers = iter(range(count))
        self._next_lock = threading.Lock()
        self._threads = [threading.Thread(target=self._produce, name=f"load-{n}") for n in range(PRODUCERS)]
        self._started = 0.0

    def start(self) -> Load:
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    @property
    def done(self) -> bool:
        return not any(t.is_alive() for t in self._threads)

    def _take(self) -> int | None:
        with self._next_lock:
            return next(self._numbers, None)

    def _produce(self) -> None:
        while (n := self._take()) is not None:
            pause = self._started + n / self.rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            self._send(n)

    def _send(self, n: int) -> None:
        channel = self.mix[n % len(self.mix)]
        body = f"chaos {secrets.token_hex(8)}"
        assert self.peers.webhooks is not None
        # A refused send is retried as a caller would: the id it finally returns is accepted.
        for _ in itertools.repeat(None, 20):
            try:
                if channel is Channel.EMAIL:
                    message_id = self.service.send_email(
                        to=f"user{n}@example.com", subject=f"Chaos {n}", text=body
                    )
                elif channel is Channel.SMS:
                    message_id = self.service.send_sms(to=f"+1415555{n % 10000:04d}", message=body)
                elif channel is Channel.WEBHOOK:
                    message_id = self.service.send_webhook(url=self.peers.webhooks.url, payload={"n": n})
                elif channel is Channel.PUSH:
                    message_id = self.service.send_push(
                        user_id=f"user-{n % USERS}", title=f"Chaos {n}", body=body
                    )
                elif channel is Channel.CHAT:
                    message_id = self.service.send_chat(service="slack", to=SLACK_CHANNEL, text=body)
                else:
                    message_id = self.service.send_in_app_notification(
                        user_id=f"user-{n % 50}", title=f"Chaos {n}", message=body
                    )
            except Exception as exc:  # EnqueueError, or the database is down: nothing accepted
                with self.accepted.lock:
                    self.accepted.refused[type(exc).__name__] += 1
                time.sleep(0.5)
                continue
            with self.accepted.lock:
                self.accepted.ids[message_id] = channel
                if channel is Channel.SMS:
                    self.accepted.sms_bodies[message_id] = body
                if channel in (Channel.PUSH, Channel.CHAT):
                    self.accepted.bodies[message_id] = body
            return


def sink_copies(peers: Peers, accepted: Accepted) -> dict[str, int]:
    """How many copies of each accepted email, SMS, webhook, push and chat message its peer
    accepted."""
    assert peers.webhooks is not None
    emails = Counter(
        str(m["Message-ID"]).strip("<>").split("@")[0].removeprefix("kai.")
        for relay in (peers.smtp, peers.smtp_backup)
        for m in relay.messages
    )
    bodies = Counter(r.body for account in (peers.twilio, peers.twilio_backup) for r in account.requests)
    pushes = Counter(str(d.payload.get("body")) for d in peers.push.deliveries)
    posts = Counter(p.text for p in peers.slack.posts)
    copies: dict[str, int] = {}
    for message_id, channel in accepted.ids.items():
        if channel is Channel.EMAIL:
            copies[message_id] = emails[message_id]
        elif channel is Channel.SMS:
            copies[message_id] = bodies[accepted.sms_bodies[message_id]]
        elif channel is Channel.WEBHOOK:
            copies[message_id] = peers.webhooks.count(message_id)
        elif channel is Channel.PUSH:
            copies[message_id] = pushes[accepted.bodies[message_id]]
        elif channel is Channel.CHAT:
            copies[message_id] = posts[accepted.bodies[message_id]]
    return copies
