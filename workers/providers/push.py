"""Push to every device of a user, through the service each device belongs to.

A user may have a browser subscription, an Android phone (FCM) and an iPhone (APNs); one
message goes to each of them at once, and succeeds if any device took it. A device the
service says is gone is reported back (:attr:`DeviceOutcome.gone`) so the push worker
removes it; the others' failures decide between retrying the message and failing it. A
device whose service is not configured waits like a message whose credentials are wrong
(temporary), rather than being dropped silently. With no push service configured at all, the
embedded default writes what each device would get to ``var/outbox/``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.config import Settings
from shared.errors import DeliveryError, PermanentDeliveryError, TargetGone, TemporaryDeliveryError
from shared.payloads import PushPayload, PushTarget
from workers.providers.base import Outgoing, SendResult

#: The settings each kind of device needs, named in the error of an unconfigured one.
_NEEDS = {
    "web": "VAPID_PRIVATE_KEY and VAPID_SUBJECT",
    "fcm": "FCM_SERVICE_ACCOUNT",
    "apns": "APNS_KEY, APNS_KEY_ID and APNS_TEAM_ID",
}


class DeviceSender(Protocol):
    async def send(self, message: Outgoing[PushPayload], target: PushTarget) -> SendResult: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class DeviceOutcome:
    target: PushTarget
    result: SendResult | DeliveryError

    @property
    def gone(self) -> bool:
        return isinstance(self.result, TargetGone)


def _senders(settings: Settings) -> dict[str, DeviceSender]:
    push = settings.push
    if not push.any:
        from workers.providers.outbox import OutboxPushSender

        outbox = OutboxPushSender(settings)
        return {"web": outbox, "fcm": outbox, "apns": outbox}
    senders: dict[str, DeviceSender] = {}
    if push.web_push:
        from workers.providers.webpush import WebPushProvider

        senders["web"] = WebPushProvider(settings)
    if push.fcm:
        from workers.providers.fcm import FcmProvider

        senders["fcm"] = FcmProvider(settings)
    if push.apns:
        from workers.providers.apns import ApnsProvider

        senders["apns"] = ApnsProvider(settings)
    return senders


class PushDevices:
    """Sends one push to many devices; built once per worker process."""

    def __init__(self, settings: Settings) -> None:
        self.senders = _senders(settings)

    async def send_each(
        self, message: Outgoing[PushPayload], targets: Sequence[PushTarget]
    ) -> list[DeviceOutcome]:
        return list(await asyncio.gather(*(self._one(message, target) for target in targets)))

    async def _one(self, message: Outgoing[PushPayload], target: PushTarget) -> DeviceOutcome:
        sender = self.senders.get(target.kind)
        if sender is None:
            needs = _NEEDS.get(target.kind, "a push service")
            error = TemporaryDeliveryError(
                f"{needs} must be set to reach {target.kind} devices", code=f"{target.kind}_not_configured"
            )
            return DeviceOutcome(target, error)
        try:
            return DeviceOutcome(target, await sender.send(message, target))
        except DeliveryError as exc:
            return DeviceOutcome(target, exc)

    async def close(self) -> None:
        for sender in {id(s): s for s in self.senders.values()}.values():
            await sender.close()


def summarize(outcomes: Sequence[DeviceOutcome]) -> SendResult:
    """The message's result from its devices': sent if any device took it (the others'
    failures noted); else the retryable failure if there is one, so the devices that may still
    take it get another try; else failed."""
    taken = [o for o in outcomes if isinstance(o.result, SendResult)]
    failed = [(o.target, o.result) for o in outcomes if isinstance(o.result, DeliveryError)]
    if taken:
        first = taken[0].result
        assert isinstance(first, SendResult)
        kinds = sorted({o.target.kind for o in taken})
        # Only a partial success says more (the status' lastError shows it).
        note = None
        if failed:
            note = f"{len(taken)} of {len(outcomes)} devices; " + "; ".join(
                f"{t.kind} {t.id[:8]}: {e.code}" for t, e in failed
            )
        return SendResult(
            provider_message_id=first.provider_message_id,
            delivered=False,
            provider="+".join(kinds),
            note=note,
        )
    temporary = [e for _, e in failed if isinstance(e, TemporaryDeliveryError)]
    if temporary:
        hints = [e.retry_after_ms for e in temporary if e.retry_after_ms]
        first_error = temporary[0]
        raise TemporaryDeliveryError(
            f"no device took it: {first_error.message}",
            code=first_error.code,
            retry_after_ms=max(hints) if hints else None,
        )
    if failed and all(isinstance(e, TargetGone) for _, e in failed):
        raise PermanentDeliveryError("every device of the user is gone (removed)", code="push_targets_gone")
    if failed:
        first_permanent = failed[0][1]
        raise PermanentDeliveryError(
            f"no device took it: {first_permanent.message}", code=first_permanent.code
        )
    raise PermanentDeliveryError("the user has no registered devices", code="no_push_targets")
