"""The realtime contract: inbox events for one user, published by whatever changed the inbox
(the in-app worker after its commit, the gateway after a mark-as-read) and delivered to that
user's open notification streams in every gateway process.

A :class:`Hub` publishes; each gateway process keeps its own open streams in
:class:`LocalStreams` and the hub feeds them. Delivery is best effort: an event that is lost
(a Redis outage, a slow client whose mailbox overflowed) is never lost for the user, because
the stream ends and the client reconnects with ``Last-Event-ID`` and replays the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from shared.errors import KaiError

#: Events an open stream may have waiting before it is considered stuck and closed (the
#: client then resumes from the database with ``Last-Event-ID``).
MAILBOX_SIZE = 256


class RealtimeError(KaiError):
    """The pub/sub transport failed; the inbox rows are committed regardless."""


class TooManyStreams(KaiError):
    """The user already holds the allowed number of open streams on this process."""


@dataclass(frozen=True)
class InboxEvent:
    """One change to a user's inbox. ``kind`` is the SSE event name (``notification`` or
    ``unread-count``); ``id`` is the replay cursor of a notification event."""

    user_id: str
    kind: str
    data: dict[str, Any]
    id: str | None = None

    def encode(self) -> bytes:
        return json.dumps({"u": self.user_id, "k": self.kind, "d": self.data, "i": self.id}).encode()

    @classmethod
    def decode(cls, raw: bytes | str) -> InboxEvent:
        fields = json.loads(raw)
        return cls(user_id=fields["u"], kind=fields["k"], data=fields["d"], id=fields.get("i"))


@dataclass(eq=False)
class Stream:
    """One open connection's mailbox, fed from any thread, read on its event loop."""

    user_id: str
    loop: asyncio.AbstractEventLoop
    #: ``None`` wakes the reader up after an interruption.
    queue: asyncio.Queue[InboxEvent | None] = field(default_factory=lambda: asyncio.Queue(MAILBOX_SIZE))
    #: Set when events were dropped or the feed was interrupted: the stream must end so the
    #: client reconnects and replays what it missed.
    broken: asyncio.Event = field(default_factory=asyncio.Event)

    def deliver(self, event: InboxEvent) -> None:
        # A closed loop means the connection is gone.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._put, event)

    def interrupt(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._put, None)

    def _put(self, event: InboxEvent | None) -> None:
        if event is None:
            self.broken.set()
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.broken.set()


class LocalStreams:
    """This process's open streams, by user, with the per-user cap."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_user: dict[str, set[Stream]] = {}

    def open(self, user_id: str, limit: int) -> Stream:
        stream = Stream(user_id, asyncio.get_running_loop())
        with self._lock:
            streams = self._by_user.setdefault(user_id, set())
            if len(streams) >= limit:
                raise TooManyStreams(f"user already has {len(streams)} open streams")
            streams.add(stream)
        return stream

    def close(self, stream: Stream) -> None:
        with self._lock:
            streams = self._by_user.get(stream.user_id)
            if streams is not None:
                streams.discard(stream)
                if not streams:
                    del self._by_user[stream.user_id]

    def deliver(self, event: InboxEvent) -> None:
        with self._lock:
            streams = list(self._by_user.get(event.user_id, ()))
        for stream in streams:
            stream.deliver(event)

    def interrupt_all(self) -> None:
        with self._lock:
            streams = [s for group in self._by_user.values() for s in group]
        for stream in streams:
            stream.interrupt()

    def count(self, user_id: str | None = None) -> int:
        with self._lock:
            if user_id is not None:
                return len(self._by_user.get(user_id, ()))
            return sum(len(group) for group in self._by_user.values())


class Hub(ABC):
    """Publishes inbox events to every gateway process and feeds this process's streams."""

    def __init__(self) -> None:
        self.streams = LocalStreams()

    @abstractmethod
    def publish(self, event: InboxEvent) -> None:
        """Send ``event`` to every process. Thread-safe; blocks briefly at most. Raises
        :class:`RealtimeError` when the transport is down."""

    @abstractmethod
    async def start(self) -> None:
        """Begin feeding this process's streams (the gateway's start-up)."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop feeding streams (the gateway's shutdown)."""

    @abstractmethod
    def close(self) -> None:
        """Release the publishing side's connections."""
