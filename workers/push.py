"""The push pool: one message reaches every device its user registered (:mod:`shared.push_targets`).

The devices are read when the message is sent, not when it was accepted, so a device added
in between gets it and one removed does not. The reads of every message in flight in the
process go to the database together, one statement per batch
(:class:`~shared.db.group_commit.GroupCommit`), and so do the devices' outcomes. Each device's
answer is handled here, where the storage is: a device its push service says is gone is
removed at once, a device that took it is marked with the time (at most once an hour: a
write per push would double the channel's database work for a figure read by people); the
message's own result follows from all of them (:func:`workers.providers.push.summarize`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection

from shared import push_targets
from shared.channels import Channel
from shared.config import Settings
from shared.db.group_commit import GroupCommit
from shared.db.models import utcnow
from shared.db.rls import act_as_system
from shared.errors import DeliveryError, PermanentDeliveryError
from shared.logging import get_logger
from shared.payloads import PushPayload, PushTarget
from workers.delivery.attempt import Delivery
from workers.delivery.ledger import Claim
from workers.delivery.pipeline import Pipeline
from workers.providers.base import FailedDispatch, SendResult
from workers.providers.push import DeviceOutcome, PushDevices, summarize

log = get_logger(__name__)

#: How stale a device's ``last_success_at`` may get before a push that reached it renews it.
SUCCESS_MARK_INTERVAL = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Outcomes:
    gone: list[str]
    took: list[str]


class DeviceBook:
    """The users' devices as the push pool reads and updates them, a batch at a time."""

    def __init__(self, settings: Settings) -> None:
        url = settings.database_url
        self.reader: GroupCommit[str, list[PushTarget]] = GroupCommit(
            "push_devices", url, self._read, before=act_as_system
        )
        self.writer: GroupCommit[Outcomes, None] = GroupCommit(
            "push_outcomes", url, self._write, before=act_as_system
        )

    async def of(self, user_id: str) -> list[PushTarget]:
        return await self.reader.call(user_id)

    async def remember(self, outcomes: Outcomes) -> None:
        await self.writer.call(outcomes)

    async def close(self) -> None:
        await self.reader.stop()
        await self.writer.stop()

    @staticmethod
    def _read(connection: Connection, user_ids: Sequence[str]) -> list[list[PushTarget]]:
        found = push_targets.for_users(connection, user_ids)
        return [found[user] for user in user_ids]

    @staticmethod
    def _write(connection: Connection, items: Sequence[Outcomes]) -> list[None]:
        push_targets.prune(connection, [t for item in items for t in item.gone])
        push_targets.mark_success(connection, [t for item in items for t in item.took])
        return [None] * len(items)


class PushPipeline(Pipeline):
    def __init__(self, settings: Settings) -> None:
        self.devices = PushDevices(settings)
        self.book = DeviceBook(settings)
        super().__init__(Channel.PUSH, self.devices, settings)  # type: ignore[arg-type]

    async def close(self) -> None:
        await super().close()
        await self.book.close()

    async def dispatch(self, delivery: Delivery, claim: Claim[Any]) -> SendResult | FailedDispatch:
        if not delivery.user_id:
            return FailedDispatch(PermanentDeliveryError("a push needs a userId", code="push_invalid"))
        payload = delivery.payload
        if not isinstance(payload, PushPayload):
            return FailedDispatch(PermanentDeliveryError("not a push payload", code="push_invalid"))
        started = time.perf_counter()
        try:
            targets = await self.book.of(delivery.user_id)
            outcomes = await self.devices.send_each(self.outgoing(delivery), targets)
            await self._remember(delivery, outcomes)
            result = summarize(outcomes)
        except DeliveryError as exc:
            self.observe_provider(started, exc)
            return FailedDispatch(exc)
        except Exception as exc:  # the database failing, or a bug: retry, then dead-letter
            self.observe_provider(started, None)
            return FailedDispatch(self.unexpected(delivery.id, exc))
        self.observe_provider(started, result)
        return result

    async def _remember(self, delivery: Delivery, outcomes: list[DeviceOutcome]) -> None:
        gone = [o.target.id for o in outcomes if o.gone]
        stale = utcnow() - SUCCESS_MARK_INTERVAL
        took = [
            o.target.id
            for o in outcomes
            if isinstance(o.result, SendResult)
            and (o.target.last_success_at is None or o.target.last_success_at < stale)
        ]
        if not (gone or took):
            return
        await self.book.remember(Outcomes(gone, took))
        if gone:
            log.info(
                "push.devices_removed", message_id=delivery.id, user_id=delivery.user_id, count=len(gone)
            )


def build_pipeline(settings: Settings) -> Pipeline:
    return PushPipeline(settings)
