"""The Redis hub: events travel over one Redis pub/sub channel to every gateway process.

Every gateway process subscribes to the one channel and hands each event to its own streams
for that user. The channel is named after the database the inbox lives in, so deployments
(or test runs) sharing a Redis never see each other's events. One channel keeps a single
subscription per process however many users are connected; its cost is that every process
sees every event, which is small next to the database write that produced it. When the
subscription drops, the process closes its open streams: their clients reconnect with
``Last-Event-ID`` and replay what they missed from the database, so an outage delays events
but never loses them.
"""

from __future__ import annotations

import asyncio
import contextlib

import redis
import redis.asyncio as aioredis

from shared.logging import get_logger
from shared.realtime.base import Hub, InboxEvent, RealtimeError

log = get_logger(__name__)

#: Prefix of the pub/sub channel all inbox events of one database share.
CHANNEL_PREFIX = "kai:inbox:"

#: A publish happens after the inbox commit on a worker thread: bound how long a Redis outage
#: can hold that thread, in seconds.
PUBLISH_TIMEOUT_SECONDS = 0.5

#: Wait between attempts to re-subscribe after the subscription dropped, in seconds.
RESUBSCRIBE_DELAY_SECONDS = 0.5


class RedisHub(Hub):
    def __init__(self, url: str, scope: str) -> None:
        super().__init__()
        self.url = url
        self.channel = CHANNEL_PREFIX + scope
        self._publisher = redis.Redis.from_url(
            url, socket_timeout=PUBLISH_TIMEOUT_SECONDS, socket_connect_timeout=PUBLISH_TIMEOUT_SECONDS
        )
        self._reader: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    def publish(self, event: InboxEvent) -> None:
        try:
            self._publisher.publish(self.channel, event.encode())
        except redis.RedisError as exc:
            raise RealtimeError(f"redis publish failed: {exc}") from exc

    async def start(self) -> None:
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_forever(), name="kai-realtime-reader")
            # Streams opened before the subscription is live would miss events; wait briefly,
            # but serve regardless (the reader keeps trying and clients resume from the database).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._subscribed.wait(), timeout=2)

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None

    def close(self) -> None:
        self._publisher.close()

    async def _read_forever(self) -> None:
        while True:
            try:
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("realtime.subscription_lost", error=f"{type(exc).__name__}: {exc}")
            self._subscribed.clear()
            self.streams.interrupt_all()
            await asyncio.sleep(RESUBSCRIBE_DELAY_SECONDS)

    async def _read(self) -> None:
        client = aioredis.Redis.from_url(self.url)
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(self.channel)
                self._subscribed.set()
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        event = InboxEvent.decode(message["data"])
                    except (ValueError, KeyError, TypeError):
                        log.warning("realtime.bad_event")
                        continue
                    self.streams.deliver(event)
        finally:
            await client.aclose()
