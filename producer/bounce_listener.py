"""``kai-messaging bounces``: an SMTP server for the return path, reading each bounce and
complaint as it arrives, as ``POST /api/receipts/email`` reads a posted one.

Route mail for ``EMAIL_BOUNCE_ADDRESS``'s domain here (its MX, or a transport of your MTA). It
takes mail only for the return path, the address itself and its VERP forms (anyone else gets
550: it is no open relay), and answers a report only once its receipts are committed: while
the database is away it answers 451, and the sending server tries again later, so no report
is lost. Mail that is not a report (an auto-reply, a vacation notice) is accepted and
dropped: refusing it would only send it back to a server that can do nothing with it.
"""

from __future__ import annotations

import asyncio
import socket

from aiosmtpd.smtp import SMTP, Envelope, Session

from producer import bounces, receipts
from shared import verp
from shared.config import Settings
from shared.errors import ConfigError
from shared.logging import get_logger

log = get_logger(__name__)

#: The largest mail taken: a report may carry the whole original message.
MAX_REPORT_BYTES = 1024 * 1024


class ReportHandler:
    """aiosmtpd's handler: recipients checked at RCPT, each report recorded at DATA."""

    def __init__(self, settings: Settings) -> None:
        if settings.email_bounce_address is None:
            raise ConfigError("kai-messaging bounces needs EMAIL_BOUNCE_ADDRESS: the return path it serves")
        self.settings = settings
        self.bounce_address = settings.email_bounce_address

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if not verp.is_ours(self.bounce_address, address):
            return f"550 5.1.1 <{address}>: this server takes mail for {self.bounce_address} only"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        try:
            findings = bounces.read(raw, bounce_address=self.bounce_address, envelope_to=envelope.rcpt_tos)
        except bounces.NotAReport as exc:
            log.info("bounces.not_a_report", reason=str(exc), rcpt_to=envelope.rcpt_tos)
            return "250 2.0.0 accepted; not a report, dropped"
        try:
            forwarded = await asyncio.to_thread(bounces.record, self.settings, findings)
        except bounces.NotAReport as exc:  # a message id that names no email of ours
            log.info("bounces.unknown_message", reason=str(exc))
            return "250 2.0.0 accepted; no such email, dropped"
        except Exception:
            log.exception("bounces.record_failed")
            return "451 4.3.0 the report cannot be recorded now; try again later"
        log.info("bounces.recorded", receipts=[f"{f.message_id} {f.type} {f.code}" for f in findings])
        try:
            await receipts.publish_forwarded(self.settings, forwarded)
        except Exception:  # kept with their relay markers: the scheduler publishes them
            log.warning("bounces.forward_publish_failed", exc_info=True)
        return "250 2.0.0 recorded"


async def serve(settings: Settings, host: str, port: int, ready: asyncio.Event | None = None) -> None:
    """Listen on ``host:port`` until cancelled; ``ready`` is set once it accepts connections."""
    handler = ReportHandler(settings)
    hostname = socket.getfqdn()

    def session() -> SMTP:
        return SMTP(handler, hostname=hostname, data_size_limit=MAX_REPORT_BYTES, enable_SMTPUTF8=True)

    server = await asyncio.get_running_loop().create_server(session, host, port)
    log.info("bounces.listening", host=host, port=port, address=handler.bounce_address)
    if ready is not None:
        ready.set()
    async with server:
        await server.serve_forever()
