"""The pipeline's reads and writes of message rows, in batches shared by every message the
process has in flight (:mod:`shared.db.group_commit`).

Per attempt the pipeline makes two trips here: the **claim** (the row taken for one attempt,
with the user's preferences and whatever the channel loads beside it, e.g. a webhook's
endpoint) and the **record** (the outcome, with whatever the channel writes beside it in the
same transaction, e.g. a webhook's delivery log). Each trip joins whatever the other
messages have waiting, so at load a transaction carries tens of messages instead of one.

Claims commit with ``synchronous_commit = off`` on PostgreSQL: a claim lost in a database
crash is simply taken again (its lease never existed), and nothing outside the database has
acted on it yet. Records commit durably, before the broker message is acknowledged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, text

from shared import preferences, tracking
from shared.config import Settings
from shared.db.group_commit import GroupCommit
from shared.db.rls import act_as_system

E = TypeVar("E")

#: Loads what a channel needs beside its claimed rows, keyed by message id, in the claim's
#: transaction.
ExtraLoader = Callable[[Connection, Sequence[tracking.Claimed]], dict[str, E]]
#: Writes what a channel keeps beside its outcomes, in the record's transaction.
ExtraWriter = Callable[[Connection, Sequence["Record"]], None]


@dataclass(frozen=True)
class Claim(Generic[E]):
    result: tracking.ClaimResult
    #: The user's preferences as they are now (messages for a user only).
    preferences: preferences.Preferences | None = None
    #: What the channel loaded beside the row (a webhook's endpoint), if anything.
    extra: E | None = None


@dataclass(frozen=True)
class Record:
    finish: tracking.Finish
    #: What the channel writes beside the outcome (a webhook's delivery log row).
    extra: Any = None


def _as_system_without_waiting_for_the_flush(connection: Connection) -> None:
    act_as_system(connection)
    if connection.dialect.name == "postgresql":
        connection.execute(text("SET LOCAL synchronous_commit TO OFF"))


class Ledger(Generic[E]):
    def __init__(
        self,
        settings: Settings,
        name: str,
        *,
        load_extra: ExtraLoader[E] | None = None,
        write_extra: ExtraWriter | None = None,
    ) -> None:
        self.lease = timedelta(milliseconds=settings.delivery_lease_ms)
        self.load_extra = load_extra
        self.write_extra = write_extra
        url = settings.database_url
        self.claims: GroupCommit[str, Claim[E]] = GroupCommit(
            f"{name}-claims", url, self._claim_batch, before=_as_system_without_waiting_for_the_flush
        )
        self.records: GroupCommit[Record, bool] = GroupCommit(
            f"{name}-records", url, self._record_batch, before=act_as_system
        )

    async def claim(self, message_id: str) -> Claim[E]:
        return await self.claims.call(message_id)

    async def record(self, record: Record) -> bool:
        """Durably write the outcome; False when the attempt no longer held the claim."""
        return await self.records.call(record)

    async def stop(self) -> None:
        await self.claims.stop()
        await self.records.stop()

    def _claim_batch(self, connection: Connection, message_ids: Sequence[str]) -> list[Claim[E]]:
        results = tracking.claim_many(connection, message_ids, self.lease)
        claimed = [r for r in results if isinstance(r, tracking.Claimed)]
        prefs = preferences.load_many(connection, {c.user_id for c in claimed if c.user_id})
        extras = self.load_extra(connection, claimed) if self.load_extra and claimed else {}
        out: list[Claim[E]] = []
        for result in results:
            if isinstance(result, tracking.Claimed):
                user_prefs = prefs.get(result.user_id) if result.user_id else None
                out.append(Claim(result, user_prefs, extras.get(result.id)))
            else:
                out.append(Claim(result))
        return out

    def _record_batch(self, connection: Connection, records: Sequence[Record]) -> list[bool]:
        # The channel's rows first: an endpoint's health row is locked before the status
        # updates, in the same order as in every other transaction.
        if self.write_extra is not None:
            self.write_extra(connection, records)
        return tracking.finish_many(connection, [r.finish for r in records])
