"""The realtime contract's local side: per-user stream registry, the cap, delivery from other
threads, and streams that must end (a full mailbox, a lost subscription)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from shared.realtime import InboxEvent, MemoryHub, TooManyStreams
from shared.realtime.base import MAILBOX_SIZE


def event(user_id: str, n: int = 0) -> InboxEvent:
    return InboxEvent(user_id, "notification", {"id": str(n)}, id=f"{n}-{n}")


def test_events_round_trip_through_their_wire_form() -> None:
    """Given an event, when encoded and decoded, then it is unchanged."""
    original = InboxEvent("alice", "unread-count", {"count": 3})

    assert InboxEvent.decode(original.encode()) == original


def test_a_published_event_reaches_only_its_users_streams_even_from_another_thread() -> None:
    """Given streams for Alice and Bob, when an event for Alice is published from a worker
    thread, then only Alice's stream receives it."""

    async def scenario() -> tuple[int, int]:
        hub = MemoryHub()
        alice = hub.streams.open("alice", limit=5)
        bob = hub.streams.open("bob", limit=5)
        worker = threading.Thread(target=hub.publish, args=(event("alice"),))
        worker.start()
        worker.join()
        received = await asyncio.wait_for(alice.queue.get(), timeout=5)
        assert received == event("alice")
        return alice.queue.qsize(), bob.queue.qsize()

    assert asyncio.run(scenario()) == (0, 0)


def test_the_cap_counts_open_streams_per_user() -> None:
    """Given a cap of two, when Alice opens a third stream, then it is refused, Bob is not
    affected, and closing one frees its slot."""

    async def scenario() -> None:
        hub = MemoryHub()
        first = hub.streams.open("alice", limit=2)
        hub.streams.open("alice", limit=2)
        with pytest.raises(TooManyStreams):
            hub.streams.open("alice", limit=2)
        hub.streams.open("bob", limit=2)
        hub.streams.close(first)
        hub.streams.close(first)  # twice is harmless
        hub.streams.open("alice", limit=2)
        assert hub.streams.count("alice") == 2 and hub.streams.count() == 3

    asyncio.run(scenario())


def test_a_stream_that_falls_behind_is_broken_rather_than_unbounded() -> None:
    """Given a stream nobody reads, when more events arrive than its mailbox holds, then it is
    marked broken (its client will reconnect and replay from the database)."""

    async def scenario() -> bool:
        hub = MemoryHub()
        stream = hub.streams.open("alice", limit=1)
        for n in range(MAILBOX_SIZE + 1):
            hub.publish(event("alice", n))
        await asyncio.sleep(0)  # let the loop run the deliveries
        return stream.broken.is_set()

    assert asyncio.run(scenario())


def test_interrupting_wakes_waiting_streams() -> None:
    """Given a stream waiting for events, when all streams are interrupted (the Redis
    subscription dropped), then the waiter wakes and sees the stream broken."""

    async def scenario() -> bool:
        hub = MemoryHub()
        stream = hub.streams.open("alice", limit=1)
        waiter = asyncio.ensure_future(stream.queue.get())
        hub.streams.interrupt_all()
        assert await asyncio.wait_for(waiter, timeout=5) is None
        return stream.broken.is_set()

    assert asyncio.run(scenario())
