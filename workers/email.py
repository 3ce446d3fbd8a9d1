"""The email pool: SMTP through a pool of reused aiosmtplib connections per relay (``EMAIL_HOST``,
then ``EMAIL_FALLBACK_PROVIDERS`` when it fails, :mod:`workers.delivery.failover`), or ``.eml``
files in ``var/outbox/`` when no ``EMAIL_HOST`` is configured (the embedded default).

Emails to a user that are not critical carry a one-click unsubscribe link
(:mod:`shared.unsubscribe`). Before the user's preferences, every email is checked against
the suppression list (:mod:`shared.suppressions`), read in the claim's transaction for the
whole batch: an address that bounced hard or complained gets nothing more, critical
messages included (a mailbox that does not exist bounces them too, and a complainant's
provider counts each one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection

from shared import engagement, suppressions, tracking, unsubscribe
from shared.channels import Channel, Status
from shared.config import Settings
from shared.logging import get_logger
from shared.payloads import EmailPayload
from workers.delivery.attempt import Delivery
from workers.delivery.failover import Failover, Named
from workers.delivery.ledger import Claim, Ledger, Record
from workers.delivery.pipeline import Action, Outcome, Pipeline
from workers.email_tracking import tracked
from workers.providers.base import Outgoing, Provider

log = get_logger(__name__)


def build_provider(settings: Settings) -> Provider[EmailPayload]:
    if settings.email_host is None:
        from workers.providers.outbox import OutboxEmailProvider

        return OutboxEmailProvider(settings)
    from workers.providers.smtp import SmtpProvider

    relays = [Named(relay.name, SmtpProvider(settings, relay)) for relay in settings.smtp_relays]
    return Failover(Channel.EMAIL, relays, settings)


def load_suppressed(connection: Connection, claimed: Sequence[tracking.Claimed]) -> dict[str, str]:
    """The claimed emails whose address is suppressed, each with the reason."""
    found = suppressions.among(connection, {c.recipient for c in claimed})
    return {c.id: found[c.recipient] for c in claimed if c.recipient in found}


class EmailPipeline(Pipeline):
    def make_ledger(self) -> Ledger[str]:
        return Ledger(self.settings, self.channel.value, load_extra=load_suppressed)

    async def before_sending(self, delivery: Delivery, claim: Claim[Any]) -> Outcome | None:
        if claim.extra is not None:
            reason = f"{delivery.recipient} is suppressed ({claim.extra.replace('_', ' ')})"
            finish = tracking.Finish(
                delivery.id, delivery.attempt, Status.SKIPPED, reason, suppressions.SKIPPED_CODE
            )
            await self.ledger.record(Record(finish))
            log.info(
                "delivery.skipped", message_id=delivery.id, channel=self.channel.value, code="suppressed"
            )
            return Outcome(Action.ACK, reason=suppressions.SKIPPED_CODE)
        return await super().before_sending(delivery, claim)

    def outgoing(self, delivery: Delivery) -> Outgoing[Any]:
        outgoing = super().outgoing(delivery)
        if delivery.critical:
            return outgoing  # ignores preferences, so offers no way out; nobody's campaign
        if isinstance(outgoing.payload, EmailPayload) and engagement.enabled(self.settings):
            outgoing = replace(outgoing, payload=tracked(self.settings, delivery, outgoing.payload))
        # Preferences are a user's: without one there is nothing to turn off.
        if delivery.user_id is None:
            return outgoing
        return replace(outgoing, unsubscribe_url=unsubscribe.link(self.settings, delivery.id))


def build_pipeline(settings: Settings) -> Pipeline:
    return EmailPipeline(Channel.EMAIL, build_provider(settings), settings)
