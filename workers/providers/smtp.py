"""Email over SMTP (aiosmtplib), called synchronously from many worker threads.

aiosmtplib is asyncio-only and one ``SMTP`` object is one connection whose sends are
serialized, so the provider owns one event loop in a background thread and a pool of up to
``EMAIL_POOL_SIZE`` connections on it. Worker threads hand each message to that loop and block
on the result, so a worker process keeps at most ``EMAIL_POOL_SIZE`` SMTP sessions open however
many threads it runs, and sessions are reused instead of paying TCP + TLS + AUTH per mail.

TLS is never left to chance (``start_tls=None`` would silently send in clear text when a
man in the middle strips the STARTTLS offer): ``EMAIL_SECURE=true`` means implicit TLS, else
STARTTLS is required — except for a relay on the loopback interface, which is a local MTA or a
test sink that usually has no certificate and whose traffic never leaves the machine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import socket
import ssl
import threading
from collections.abc import Coroutine
from email.message import EmailMessage
from typing import Any, TypeVar

import aiosmtplib

from shared.config import Settings
from shared.errors import ConfigError, DeliveryError, PermanentDeliveryError, TemporaryDeliveryError
from shared.payloads import EmailPayload
from workers.providers.base import Outgoing, SendResult
from workers.providers.mime import build_email

#: One attempt (waiting for a pooled connection, connect, TLS, AUTH and the mail transaction)
#: may take at most this many ``EMAIL_TIMEOUT``s; the timeout itself bounds each socket
#: operation, as aiosmtplib applies it.
ATTEMPT_TIMEOUT_FACTOR = 4

#: The calling thread waits this much longer than the attempt deadline, so the deadline on the
#: event loop fires first and returns the connection to the pool in a known state.
CALLER_GRACE_S = 2.0

#: How long ``close()`` waits for each connection's QUIT.
QUIT_TIMEOUT_S = 2.0

#: "Service not available, closing transmission channel": on a pooled connection this is how
#: many servers announce that they dropped a session that sat idle too long.
SMTP_SERVICE_CLOSING = 421

#: Host names that always mean this machine.
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})

_T = TypeVar("_T")


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def tls_mode(settings: Settings) -> tuple[bool, bool]:
    """``(use_tls, start_tls)`` for aiosmtplib; see the module docstring for the reasoning."""
    if settings.email_secure:
        return True, False
    host = settings.email_host or ""
    if is_loopback_host(host):
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


class _LoopThread:
    """An asyncio event loop running forever in a daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        # Let cancelled leftovers finish so closing the loop does not warn about pending tasks.
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()


class SmtpProvider:
    """Send email through the SMTP relay in ``EMAIL_HOST``; thread-safe, pooled."""

    def __init__(self, settings: Settings) -> None:
        if not settings.email_host:
            raise ConfigError("SmtpProvider needs EMAIL_HOST; use OutboxEmailProvider without one")
        self._settings = settings
        self._host = settings.email_host
        self._timeout_s = settings.email_timeout_ms / 1000
        self._attempt_timeout_s = self._timeout_s * ATTEMPT_TIMEOUT_FACTOR
        self._use_tls, self._start_tls = tls_mode(settings)
        # aiosmtplib otherwise looks the name up on every connect through the default thread
        # pool, which refuses work once the interpreter starts shutting down: a worker
        # finishing its last messages after SIGTERM then failed every email it had left.
        self._local_hostname = socket.getfqdn()
        self._lock = threading.Lock()
        self._runner: _LoopThread | None = None
        # Touched only on the provider's loop: a slot per allowed connection, None = not open.
        # Last in, first out, so a quiet period reuses one warm session instead of cycling
        # through (and opening) all of them.
        self._slots: asyncio.LifoQueue[aiosmtplib.SMTP | None] | None = None
        self._open: set[aiosmtplib.SMTP] = set()
        #: Connections opened since start; lets tests and metrics see that sessions are reused.
        self.connections_opened = 0

    # -- the synchronous face -------------------------------------------------------------

    def send(self, message: Outgoing[EmailPayload]) -> SendResult:
        mime = build_email(message, self._settings.email_from)
        recipient = message.payload.to
        future = self._loop_thread().submit(self._deliver(mime, recipient))
        try:
            future.result(timeout=self._attempt_timeout_s + CALLER_GRACE_S)
        except concurrent.futures.TimeoutError as exc:
            # Only if the loop itself is stuck; its own deadline normally answers first.
            future.cancel()
            raise TemporaryDeliveryError("SMTP send did not finish in time", code="smtp_timeout") from exc
        return SendResult(provider_message_id=str(mime["Message-ID"]), delivered=False)

    def close(self) -> None:
        """QUIT every connection and stop the loop. A later send() starts afresh."""
        with self._lock:
            runner, self._runner = self._runner, None
        if runner is None:
            return
        try:
            runner.submit(self._close_all()).result(timeout=QUIT_TIMEOUT_S * 2 + CALLER_GRACE_S)
        except Exception:
            pass  # shutting down: whatever did not QUIT in time is closed below
        finally:
            # Queued before the loop's stop, so it runs on the loop while it is still alive.
            runner.loop.call_soon_threadsafe(self._close_open)
            runner.stop()
            self._slots = None

    def _loop_thread(self) -> _LoopThread:
        with self._lock:
            if self._runner is None:
                self._runner = _LoopThread(name="smtp-provider-loop")
            return self._runner

    # -- on the loop ----------------------------------------------------------------------

    def _pool(self) -> asyncio.LifoQueue[aiosmtplib.SMTP | None]:
        if self._slots is None:
            self._slots = asyncio.LifoQueue()
            for _ in range(self._settings.email_pool_size):
                self._slots.put_nowait(None)
        return self._slots

    async def _connect(self) -> aiosmtplib.SMTP:
        settings = self._settings
        conn = aiosmtplib.SMTP(
            hostname=self._host,
            port=settings.email_port,
            local_hostname=self._local_hostname,
            username=settings.email_user,
            password=settings.email_password if settings.email_user else None,
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
            conn.close()
            self._open.discard(conn)

    async def _deliver(self, mime: EmailMessage, recipient: str) -> None:
        try:
            async with asyncio.timeout(self._attempt_timeout_s):
                await self._deliver_pooled(mime, recipient)
        except DeliveryError:
            raise
        except Exception as exc:
            raise classify(exc) from exc

    async def _deliver_pooled(self, mime: EmailMessage, recipient: str) -> None:
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
                errors, _ = await conn.send_message(mime, recipients=[recipient])
            except Exception as exc:
                if not (reused and _is_stale_connection_error(exc)):
                    raise
                # A pooled session died while idle; that says nothing about this message, so
                # try once on a fresh connection before reporting anything.
                self._discard(conn)
                conn = None
                conn = await self._connect()
                errors, _ = await conn.send_message(mime, recipients=[recipient])
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
