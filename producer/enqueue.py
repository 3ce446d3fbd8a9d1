"""Accepting messages: their rows written in batches, their ids published with pipelined
confirms, on one asyncio event loop.

A message is accepted once its ``notification_logs`` row is committed **and** RabbitMQ has
confirmed its id: only then does the caller get the id (the Python API) or a 202 (the
gateway). Every request in flight on the loop shares the insert's transaction
(:class:`~shared.db.group_commit.GroupCommit`) and the publisher's connection
(:class:`~shared.publisher.AmqpPublisher`), so at load a request costs a fraction of a
transaction and of a broker round trip instead of one each.

If the broker does not confirm, the messages' rows are removed again and the callers get
:class:`~shared.errors.EnqueueError` (the gateway answers 503): nothing half-accepted is left
behind. Should the process die between the commit and the confirm, the relay's marker
written with the row (:mod:`shared.relay`) has the scheduler publish it within
PUBLISH_RELAY_AFTER, so an accepted message is never lost. A message due later (``due_at``)
is not published now: the scheduler publishes it when due. On the embedded broker the marker
is the publish itself: the runner's relay takes it (:mod:`shared.handoff`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import dramatiq
from sqlalchemy import Connection, text

from shared import relay, tracking
from shared.channels import Channel
from shared.config import Settings
from shared.db.group_commit import BatchFunction, GroupCommit
from shared.db.rls import act_as_system
from shared.db.session import dispose_loop_engines, get_async_engine
from shared.errors import EnqueueError, IdempotencyKeyReused
from shared.logging import get_logger
from shared.publisher import Publisher, build_publisher, channel_message

log = get_logger(__name__)


T = TypeVar("T")

#: What one accepted item becomes on the broker: ``(queue, message)``, or None when it is
#: not published now (a message due later, which the scheduler publishes).
Publishable = Callable[[T, str], "tuple[str, dramatiq.Message[None]] | None"]


class Acceptor(Generic[T]):
    """Writes rows of one kind in batches and publishes their ids; make one per event loop."""

    def __init__(
        self,
        settings: Settings,
        kind: str,
        write: BatchFunction[T, tuple[str, bool]],
        publishable: Publishable[T],
        discard: Callable[[Connection, list[str]], None],
    ) -> None:
        self.settings = settings
        self.kind = kind
        self.write = write
        self.publishable = publishable
        self.discard_rows = discard
        self.rows: GroupCommit[T, tuple[str, bool]] = GroupCommit(
            f"accept-{kind}", settings.database_url, self._write_with_markers, before=act_as_system
        )
        # Removing a marker late or never costs at most one duplicate publish (see
        # shared.relay), so these commits do not wait for the WAL flush.
        self.done: GroupCommit[str, None] = GroupCommit(
            f"published-{kind}", settings.database_url, _published, before=_without_waiting_for_the_flush
        )
        self._clearing: set[asyncio.Task[None]] = set()
        self.publisher: Publisher = build_publisher(settings)

    def _write_with_markers(
        self, connection: Connection, items: Sequence[T]
    ) -> Sequence[tuple[str, bool] | BaseException]:
        results = self.write(connection, items)
        relay.pend(
            connection,
            [
                relay.Pending(result[0], self.kind, published[0])
                for item, result in zip(items, results, strict=True)
                if isinstance(result, tuple)
                and result[1]
                and (published := self.publishable(item, result[0])) is not None
            ],
        )
        return results

    async def accept(self, item: T) -> tuple[str, bool]:
        """``(id, created)``: with an idempotency key already used for the same request, the
        first one's id; for another request, raises :class:`IdempotencyKeyReused`."""
        (result,) = await self.accept_many([item])
        if isinstance(result, IdempotencyKeyReused):
            raise result
        return result

    async def accept_many(self, items: Sequence[T]) -> list[tuple[str, bool] | IdempotencyKeyReused]:
        """Accept all of ``items`` or none: a broker refusal removes every row written here.
        An item whose idempotency key was used for another request is refused on its own."""
        outcomes = await asyncio.gather(*(self.rows.call(item) for item in items), return_exceptions=True)
        results: list[tuple[str, bool] | IdempotencyKeyReused] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, IdempotencyKeyReused):
                raise outcome
            results.append(outcome)
        fresh = [
            (result[0], published)
            for item, result in zip(items, results, strict=True)
            if isinstance(result, tuple)
            and result[1]
            and (published := self.publishable(item, result[0])) is not None
        ]
        try:
            await self.publisher.publish([published for _, published in fresh])
        except EnqueueError:
            await self._discard([message_id for message_id, _ in fresh])
            log.error("accept.publish_failed", writer=self.rows.name, items=len(fresh))
            raise
        if not self.publisher.leaves_markers:
            for message_id, _ in fresh:
                self._clear_marker(message_id)
        return results

    async def publish_written(self, messages: Sequence[tuple[Channel, str]]) -> None:
        """Publish rows another transaction wrote with their relay markers. If the broker does
        not confirm, the markers stay and the scheduler's relay publishes them later: the
        caller's work is done either way."""
        if not messages:
            return
        try:
            await self.publisher.publish([channel_message(channel, i) for channel, i in messages])
        except EnqueueError:
            log.warning("accept.publish_deferred_to_relay", writer=self.rows.name, items=len(messages))
            return
        if not self.publisher.leaves_markers:
            for _, message_id in messages:
                self._clear_marker(message_id)

    def _clear_marker(self, message_id: str) -> None:
        """Remove the relay's marker after the answer, not before it: the caller need not wait."""
        task = asyncio.create_task(self.done.call(message_id))
        self._clearing.add(task)
        task.add_done_callback(self._cleared)

    def _cleared(self, task: asyncio.Task[None]) -> None:
        self._clearing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("accept.marker_not_removed", error=str(task.exception()))

    async def _discard(self, ids: list[str]) -> None:
        if not ids:
            return
        async with get_async_engine(self.settings.database_url).begin() as connection:
            await connection.run_sync(self._discard_as_system, ids)

    def _discard_as_system(self, connection: Connection, ids: list[str]) -> None:
        act_as_system(connection)
        self.discard_rows(connection, ids)
        relay.published(connection, ids)

    async def close(self) -> None:
        await self.rows.stop()
        if self._clearing:
            await asyncio.gather(*self._clearing, return_exceptions=True)
        await self.done.stop()
        await self.publisher.close()


def _published(connection: Connection, ids: Sequence[str]) -> list[None]:
    relay.published(connection, ids)
    return [None] * len(ids)


def _without_waiting_for_the_flush(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SET LOCAL synchronous_commit TO OFF"))


def _message_publishable(
    message: tracking.NewMessage, message_id: str
) -> tuple[str, dramatiq.Message[None]] | None:
    return None if message.due_at is not None else channel_message(message.channel, message_id)


class Enqueuer(Acceptor[tracking.NewMessage]):
    """Accepts channel messages (``notification_logs`` rows)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            settings, "enqueue", tracking.create_many, _message_publishable, tracking.discard_many
        )


_acceptors: dict[tuple[int, str, str, str | None], Acceptor[Any]] = {}


def acceptor_for(settings: Settings, kind: str, make: Callable[[Settings], Acceptor[T]]) -> Acceptor[T]:
    """The running loop's acceptor of ``kind`` for the database and broker of ``settings``
    (made at first use; it reads nothing else of them)."""
    key = (id(asyncio.get_running_loop()), kind, settings.database_url, settings.broker_url)
    found = _acceptors.get(key)
    if found is None:
        found = _acceptors[key] = make(settings)
    return found


def enqueuer_for(settings: Settings) -> Acceptor[tracking.NewMessage]:
    return acceptor_for(settings, "messages", Enqueuer)


async def close_loop_acceptors() -> None:
    """Close the running loop's acceptors and its database engines (a gateway's shutdown)."""
    loop = id(asyncio.get_running_loop())
    for key in [k for k in _acceptors if k[0] == loop]:
        await _acceptors.pop(key).close()
    await dispose_loop_engines()
