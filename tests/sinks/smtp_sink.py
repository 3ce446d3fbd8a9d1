"""A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives.

Tests point the SMTP provider at it and read back parsed messages, the number of SMTP
connections opened, and can make it refuse (``fail_next``/``fail_always``) or hang up
(``drop_next``) at a chosen stage of the mail transaction.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

Stage = Literal["mail", "rcpt", "data"]

#: Name the sink greets with (skips aiosmtpd's socket.getfqdn() lookup).
SINK_HOSTNAME = "smtp-sink.test"


@dataclass
class _Fault:
    stage: Stage
    code: int | None  # None: hang up without an answer
    message: str
    remaining: int | None  # None: forever


@dataclass
class Received:
    """One accepted mail transaction."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes
    login: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _Controller(Controller):
    """Listens on a socket bound before start (port 0, so no port race) and counts sessions."""

    def __init__(self, sink: SmtpSink, listener: socket.socket, **kwargs: Any) -> None:
        self._sink = sink
        self._listener = listener
        host, port = listener.getsockname()[:2]
        super().__init__(_Handler(sink), hostname=host, port=port, **kwargs)

    def _create_server(self) -> Awaitable[Any]:
        return self.loop.create_server(self._factory_invoker, sock=self._listener)

    def factory(self) -> SMTP:
        server: SMTP = super().factory()  # type: ignore[no-untyped-call]
        self._sink._session_opened(server)
        return server


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        refusal = self._sink._fault_for("mail", server)
        if refusal is not None:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = self._sink._fault_for("rcpt", server) or self._sink._refused.get(address.lower())
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        refusal = self._sink._fault_for("data", server)
        if refusal is not None:
            return refusal
        raw = envelope.original_content or b""
        login = session.auth_data.decode() if isinstance(session.auth_data, bytes) else None
        self._sink._record(
            Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                message=message_from_bytes(raw, policy=policy.default),
                raw=raw,
                login=login,
            )
        )
        return "250 Message accepted for delivery"


class SmtpSink:
    """An SMTP server for tests. Use as a context manager or call start()/stop()."""

    def __init__(self, *, credentials: tuple[str, str] | None = None) -> None:
        self._credentials = credentials
        self._cond = threading.Condition()
        self._received: list[Received] = []
        self._faults: list[_Fault] = []
        #: Recipients refused every time, with the answer (``fail_for``).
        self._refused: dict[str, str] = {}
        self._servers: list[SMTP] = []
        self._controller: _Controller | None = None
        self.host = "127.0.0.1"
        self.port = 0
        #: SMTP connections accepted since start() (the controller's own readiness probe excluded).
        self.connections = 0
        self._commands: Counter[str] = Counter()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> SmtpSink:
        listener = socket.create_server((self.host, 0))
        self.port = listener.getsockname()[1]
        kwargs: dict[str, Any] = {"server_hostname": SINK_HOSTNAME, "ready_timeout": 10.0}
        if self._credentials is not None:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        self._controller = _Controller(self, listener, **kwargs)
        self._controller.start()
        with self._cond:
            # start() opened one connection to check the server answers; it is not a client.
            self.connections = 0
            self._servers.clear()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- programming failures ---------------------------------------------------------------

    def fail_next(
        self, code: int, message: str = "refused by test", *, times: int = 1, stage: Stage = "rcpt"
    ) -> None:
        """Answer the next ``times`` commands of ``stage`` with ``code message``."""
        with self._cond:
            self._faults.append(_Fault(stage, code, message, times))

    def fail_always(self, code: int, message: str = "refused by test", *, stage: Stage = "rcpt") -> None:
        with self._cond:
            self._faults.append(_Fault(stage, code, message, None))

    def fail_for(self, address: str, code: int, message: str = "refused by test") -> None:
        """Refuse recipient ``address`` with ``code message`` every time; others pass."""
        with self._cond:
            self._refused[address.lower()] = f"{code} {message}"

    def drop_next(self, *, times: int = 1, stage: Stage = "mail") -> None:
        """Close the connection, without an answer, on the next ``times`` commands of ``stage``."""
        with self._cond:
            self._faults.append(_Fault(stage, None, "", times))

    def clear_faults(self) -> None:
        with self._cond:
            self._faults.clear()
            self._refused.clear()

    # -- reading what arrived -----------------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        with self._cond:
            return list(self._received)

    @property
    def messages(self) -> list[EmailMessage]:
        return [r.message for r in self.received]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        """Block until ``count`` messages arrived; AssertionError after ``timeout`` seconds."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._received) >= count, timeout=timeout):
                raise AssertionError(f"SMTP sink got {len(self._received)} of {count} messages in {timeout}s")
            return [r.message for r in self._received]

    # -- called on the server's loop ----------------------------------------------------------

    def _session_opened(self, server: SMTP) -> None:
        with self._cond:
            self.connections += 1
            self._servers.append(server)

    def _record(self, received: Received) -> None:
        with self._cond:
            self._received.append(received)
            self._cond.notify_all()

    def commands(self, stage: Stage) -> int:
        """How many commands of ``stage`` (MAIL, RCPT, DATA) arrived, refused ones included."""
        with self._cond:
            return self._commands[stage]

    def _fault_for(self, stage: Stage, server: SMTP) -> str | None:
        with self._cond:
            self._commands[stage] += 1
            for fault in self._faults:
                if fault.stage != stage or fault.remaining == 0:
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                break
            else:
                return None
        if fault.code is None:
            if server.transport is not None:
                server.transport.close()
            # The answer below goes nowhere: the transport is already closing.
            return "421 4.4.2 connection dropped by test"
        return f"{fault.code} {fault.message}"

    # aiosmtpd (1.4.6) also sets its deprecated ``Session.login_data`` after a successful AUTH,
    # which warns: a test using credentials must ignore that DeprecationWarning.
    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        expected = self._credentials
        ok = (
            expected is not None
            and isinstance(auth_data, LoginPassword)
            and (auth_data.login.decode(), auth_data.password.decode()) == expected
        )
        # handled=False: aiosmtpd answers (235, or 535 on failure) itself.
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)
