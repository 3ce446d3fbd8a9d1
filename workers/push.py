"""The push pool: one message reaches every device its user registered (:mod:`shared.push_targets`).

The devices are read when the message is sent, not when it was accepted, so a device added
in between gets it and one removed does not. Each device's answer is handled here, where the
storage is: a device its push service says is gone is removed at once, a device that took it
is marked with the time (at most once an hour: a write per push would double the channel's
database work for a figure read by people); the message's own result follows from all of
them (:func:`workers.providers.push.summarize`).
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from shared import push_targets
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import utcnow
from shared.db.rls import system_scope
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


class PushPipeline(Pipeline):
    def __init__(self, settings: Settings) -> None:
        self.devices = PushDevices(settings)
        super().__init__(Channel.PUSH, self.devices, settings)  # type: ignore[arg-type]

    async def dispatch(self, delivery: Delivery, claim: Claim[Any]) -> SendResult | FailedDispatch:
        if not delivery.user_id:
            return FailedDispatch(PermanentDeliveryError("a push needs a userId", code="push_invalid"))
        payload = delivery.payload
        if not isinstance(payload, PushPayload):
            return FailedDispatch(PermanentDeliveryError("not a push payload", code="push_invalid"))
        started = time.perf_counter()
        try:
            targets = await asyncio.to_thread(self._targets, delivery.user_id)
            outcomes = await self.devices.send_each(self.outgoing(delivery), targets)
            await asyncio.to_thread(self._remember, delivery, outcomes)
            result = summarize(outcomes)
        except DeliveryError as exc:
            self.observe_provider(started, exc)
            return FailedDispatch(exc)
        except Exception as exc:  # the database failing, or a bug: retry, then dead-letter
            self.observe_provider(started, None)
            return FailedDispatch(self.unexpected(delivery.id, exc))
        self.observe_provider(started, result)
        return result

    def _targets(self, user_id: str) -> list[PushTarget]:
        with system_scope(self.settings.database_url) as session:
            return push_targets.for_delivery(session, user_id)

    def _remember(self, delivery: Delivery, outcomes: list[DeviceOutcome]) -> None:
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
        with system_scope(self.settings.database_url) as session:
            push_targets.prune(session, gone)
            push_targets.mark_success(session, took)
        if gone:
            log.info(
                "push.devices_removed", message_id=delivery.id, user_id=delivery.user_id, count=len(gone)
            )


def build_pipeline(settings: Settings) -> Pipeline:
    return PushPipeline(settings)
