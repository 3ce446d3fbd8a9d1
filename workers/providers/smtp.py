"""Email over SMTP (aiosmtplib), on the worker process's event loop.

One ``SMTP`` object is one connection whose sends are serialized, so the provider keeps a
pool of up to ``EMAIL_POOL_SIZE`` connections: a worker process holds at most that many SMTP
sessions open however many messages it has in flight, and sessions are reused instead of
paying TCP + TLS + AUTH per mail.

TLS is never left to chance (``start_tls=None`` would silently send in clear text when a
man in the middle strips the STARTTLS offer): ``EMAIL_SECURE=true`` means implicit TLS, else
STARTTLS is required — except for a relay on the loopback interface, which is a local MTA or a
test sink that usually has no certificate and whose traffic never leaves the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from email.message import EmailMessage

import aiosmtplib

from shared import verp
from shared.config import Settings
from shared.errors import ConfigError, DeliveryError, PermanentDeliveryError, TemporaryDeliveryError
from shared.payloads import EmailPayload
from shared.provider_settings import SmtpRelay
from workers.providers.base import Outgoing, SendResult
from workers.providers.mime import build_email

#: One attempt (waiting for a pooled connection, connect, TLS, AUTH and the mail transaction)
#: may take at most this many ``EMAIL_TIMEOUT``s; the timeout itself bounds each socket
#: operation, as aiosmtplib applies it.
ATTEMPT_TIMEOUT_FACTOR = 4

#: How long ``close()`` waits for each connection's QUIT.
QUIT_TIMEOUT_S = 2.0

#: "Service not available, closing transmission channel": on a pooled connection this is how
#: many servers announce that they dropped a session that sat idle too long.
SMTP_SERVICE_CLOSING = 421

#: Host names that always mean this machine.
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def tls_mode(relay: SmtpRelay) -> tuple[bool, bool]:
    """``(use_tls, start_tls)`` for aiosmtplib; see the module docstring for the reasoning."""
    if relay.secure:
        return True, False
    if is_loopback_host(relay.host):
        return False, False
    return False, True


def _code_kind(code: int) -> type[DeliveryError]:
    return PermanentDeliveryError if 500 <= code < 600 else TemporaryDeliveryError


def classify(exc: BaseException) -> DeliveryError:
    """Translate an aiosmtplib (or socket) failure into one of our two delivery errors.

    SMTP's own reply class decides where there is a reply (5xx permanent, 4xx temporary);
    anything that went wrong on the way (timeouts, refused or dropped connections, TLS) is
    temporary. Authentication failures are temporary too even though they come as 535: the
    credentials are wrong, not the message, and the message should survive until they are fixed.
    """
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [refusal.code for refusal in exc.recipients] or [0]
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        if all(500 <= code < 600 for code in codes):
            return PermanentDeliveryError(f"recipient refused: {detail}", code=f"smtp_{codes[0]}")
        first_temporary = next(code for code in codes if not 500 <= code < 600)
        return TemporaryDeliveryError(f"recipient refused: {detail}", code=f"smtp_{first_temporary}")
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return TemporaryDeliveryError(
            f"SMTP authentication failed: {exc.code} {exc.message}", code=f"smtp_auth_{exc.code}"
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _code_kind(exc.code)(f"SMTP {exc.code} {exc.message}", code=f"smtp_{exc.code}")
    # Timeouts before connection errors: SMTPConnectTimeoutError is both.
    if isinstance(exc, TimeoutError):
        return TemporaryDeliveryError(f"SMTP timed out: {exc}", code="smtp_timeout")
    if isinstance(exc, ssl.SSLError):
        return TemporaryDeliveryError(f"SMTP TLS failed: {exc}", code="smtp_tls")
    if isinstance(exc, OSError):
        # SMTPServerDisconnected and SMTPConnectError are ConnectionErrors.
        return TemporaryDeliveryError(f"SMTP connection failed: {exc}", code="smtp_connection")
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        # e.g. a non-ASCII address and a relay without SMTPUTF8: the same relay refuses it again.
        return PermanentDeliveryError(
            f"SMTP relay cannot take this message: {exc}", code="smtp_not_supported"
        )
    if isinstance(exc, ValueError):
        # aiosmtplib validates envelope addresses before talking to the server.
        return PermanentDeliveryError(f"invalid address: {exc}", code="smtp_invalid_address")
    if isinstance(exc, aiosmtplib.SMTPException):
        # Mostly configuration (STARTTLS required but not offered, no usable AUTH method).
        return TemporaryDeliveryError(f"SMTP failed: {exc}", code="smtp_error")
    return TemporaryDeliveryError(f"SMTP failed unexpectedly: {type(exc).__name__}: {exc}", code="smtp_error")


def _refusals_error(errors: dict[str, aiosmtplib.SMTPResponse]) -> DeliveryError:
    """send_message() does not raise when only some recipients were refused; it returns them."""
    refusals = [
        aiosmtplib.SMTPRecipientRefused(response.code, response.message, recipient)
        for recipient, response in errors.items()
    ]
    return classify(aiosmtplib.SMTPRecipientsRefused(refusals))


def _is_stale_connection_error(exc: BaseException) -> bool:
    """Failures that, on a connection taken from the pool, say the session died while idle."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code == SMTP_SERVICE_CLOSING
    return isinstance(exc, ConnectionError) and not isinstance(exc, TimeoutError)


class SmtpProvider:
    """Send email through one SMTP relay (``EMAIL_HOST``'s unless given another); pooled
    connections."""

    def __init__(self, settings: Settings, relay: SmtpRelay | None = None) -> None:
        if relay is None:
            if not settings.smtp_relays:
                raise ConfigError("SmtpProvider needs EMAIL_HOST; use OutboxEmailProvider without one")
            relay = settings.smtp_relays[0]
        self._settings = settings
        self._relay = relay
        self._timeout_s = settings.email_timeout_ms / 1000
        self._attempt_timeout_s = self._timeout_s * ATTEMPT_TIMEOUT_FACTOR
        self._use_tls, self._start_tls = tls_mode(relay)
        # aiosmtplib otherwise looks the name up on every connect through the default thread
        # pool, which refuses work once the interpreter starts shutting down: a worker
        # finishing its last messages after SIGTERM then failed every email it had left.
        self._local_hostname = socket.getfqdn()
        # A slot per allowed connection, None = not open; made on the loop that first sends.
        # Last in, first out, so a quiet period reuses one warm session instead of cycling
        # through (and opening) all of them.
        self._slots: asyncio.LifoQueue[aiosmtplib.SMTP | None] | None = None
        self._slots_loop: asyncio.AbstractEventLoop | None = None
        self._open: set[aiosmtplib.SMTP] = set()
        #: Connections opened since start; lets tests and metrics see that sessions are reused.
        self.connections_opened = 0

    async def send(self, message: Outgoing[EmailPayload]) -> SendResult:
        mime = build_email(message, self._settings.email_from)
        bounce_address = self._settings.email_bounce_address
        # What comes back goes to an address naming the message; else From's address takes it.
        sender = verp.sender(bounce_address, message.id) if bounce_address else None
        await self._deliver(mime, sender, message.payload.to)
        return SendResult(provider_message_id=str(mime["Message-ID"]), delivered=False)

    async def close(self) -> None:
        """QUIT every pooled connection. A later send() starts afresh."""
        if self._slots is not None and self._slots_loop is asyncio.get_running_loop():
            await self._close_all()
        self._close_open()
        self._slots = None

    def _pool(self) -> asyncio.LifoQueue[aiosmtplib.SMTP | None]:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            self._close_open()  # connections of another (finished) loop cannot be reused
            self._slots_loop = loop
            self._slots = asyncio.LifoQueue()
            for _ in range(self._settings.email_pool_size):
                self._slots.put_nowait(None)
        return self._slots

    async def _connect(self) -> aiosmtplib.SMTP:
        relay = self._relay
        conn = aiosmtplib.SMTP(
            hostname=relay.host,
            port=relay.port,
            local_hostname=self._local_hostname,
            username=relay.user,
            password=relay.password if relay.user else None,
            timeout=self._timeout_s,
            use_tls=self._use_tls,
            start_tls=self._start_tls,
        )
        self._open.add(conn)
        try:
            await conn.connect()
        except BaseException:
            self._discard(conn)
            raise
        self.connections_opened += 1
        return conn

    def _discard(self, conn: aiosmtplib.SMTP | None) -> None:
        if conn is not None:
            self._open.discard(conn)
            # A connection of a loop that has ended cannot be closed through it; the process
            # frees its socket.
            with contextlib.suppress(RuntimeError):
                conn.close()

    async def _deliver(self, mime: EmailMessage, sender: str | None, recipient: str) -> None:
        try:
            async with asyncio.timeout(self._attempt_timeout_s):
                await self._deliver_pooled(mime, sender, recipient)
        except DeliveryError:
            raise
        except Exception as exc:
            raise classify(exc) from exc

    async def _deliver_pooled(self, mime: EmailMessage, sender: str | None, recipient: str) -> None:
        slots = self._pool()
        conn = await slots.get()
        try:
            reused = conn is not None and conn.is_connected
            if conn is not None and not reused:
                self._discard(conn)  # the server hung up while it sat in the pool
                conn = None
            if conn is None:
                conn = await self._connect()
            try:
                errors, _ = await conn.send_message(mime, sender=sender, recipients=[recipient])
            except Exception as exc:
                if not (reused and _is_stale_connection_error(exc)):
                    raise
                # A pooled session died while idle; that says nothing about this message, so
                # try once on a fresh connection before reporting anything.
                self._discard(conn)
                conn = None
                conn = await self._connect()
                errors, _ = await conn.send_message(mime, sender=sender, recipients=[recipient])
            if errors:
                raise _refusals_error(errors)
        except aiosmtplib.SMTPResponseException as exc:
            # A refusal leaves the session usable (aiosmtplib sent RSET) unless the server said
            # it is closing; keep it for the next message.
            if exc.code == SMTP_SERVICE_CLOSING or conn is None or not conn.is_connected:
                self._discard(conn)
                conn = None
            raise
        except aiosmtplib.SMTPRecipientsRefused:
            raise
        except DeliveryError:
            raise
        except BaseException:
            # Timeouts, cancellations and broken connections leave the session in an unknown
            # state mid-transaction: never hand it to the next message.
            self._discard(conn)
            conn = None
            raise
        finally:
            slots.put_nowait(conn)

    async def _close_all(self) -> None:
        slots = self._pool()
        idle: list[aiosmtplib.SMTP] = []
        while not slots.empty():
            conn = slots.get_nowait()
            if conn is not None:
                idle.append(conn)

        async def quit_one(conn: aiosmtplib.SMTP) -> None:
            try:
                if conn.is_connected:
                    await conn.quit(timeout=QUIT_TIMEOUT_S)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                pass
            finally:
                self._discard(conn)

        await asyncio.gather(*(quit_one(conn) for conn in idle))

    def _close_open(self) -> None:
        for conn in list(self._open):
            self._discard(conn)
