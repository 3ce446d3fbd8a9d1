"""What the gateway's HTTP server allows a client: the options uvicorn is started with, and
the request-header deadline uvicorn does not have.

uvicorn closes a keep-alive connection left idle (``timeout_keep_alive``), but once a client
has sent the first byte of a request it waits for the rest of the headers forever: a client
sending a byte a second ("slowloris") holds a connection, and a thousand of them hold a
process's connection slots. The protocols here give every request a deadline for its
headers (GATEWAY_HEADER_TIMEOUT, counted from the connection's opening or its previous
response): a client that misses it is answered 408 and disconnected. They also cap the
headers' size (GATEWAY_MAX_HEADER_BYTES). The body has its own deadline
(:mod:`producer.gateway.bodies`).

These bound what one process gives a slow client; facing the internet, a reverse proxy in
front still buffers requests (see the README).
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.config import Settings, get_settings

#: The answer to a request whose headers missed their deadline (written on the socket
#: directly: no ASGI request exists yet), in the API's JSON error shape.
_TIMEOUT_BODY = json.dumps(
    {"error": {"code": "request_timeout", "message": "request headers not received in time", "details": []}},
    separators=(",", ":"),
).encode()
REQUEST_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: application/json\r\n"
    b"connection: close\r\n"
    b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY
)


class HeadersTooLarge(ValueError):
    """A request line and headers over GATEWAY_MAX_HEADER_BYTES (uvicorn answers 400)."""


class HeaderDeadline:
    """Mixed into a uvicorn HTTP/1.1 protocol (before it in the bases): while no request is
    in progress, the next request's headers must be complete within the deadline."""

    # Attributes of the uvicorn protocol this is mixed into.
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Read here rather than passed in: with --workers, uvicorn builds protocols in
        # processes of its own, which read the same environment.
        limits = get_settings().gateway_server
        self.header_timeout_s = limits.header_timeout_ms / 1000
        self.max_header_bytes = limits.max_header_bytes
        self._deadline: asyncio.TimerHandle | None = None
        self._bytes_since_armed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def data_received(self, data: bytes) -> None:
        self._bytes_since_armed = True
        super().data_received(data)  # type: ignore[misc]

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm(self) -> None:
        self._disarm()
        self._bytes_since_armed = False
        self._deadline = self.loop.call_later(self.header_timeout_s, self._expire, self.cycle)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, cycle_when_armed: Any) -> None:
        self._deadline = None
        # A request whose headers were complete has a cycle of its own (started after the
        # deadline was armed), or one still answering: it is the application's now.
        waiting = self.cycle is cycle_when_armed and (self.cycle is None or self.cycle.response_complete)
        if not waiting or self.transport.is_closing():
            return
        if self._bytes_since_armed:  # part of a request came: say why it is cut
            self.transport.write(REQUEST_TIMEOUT_RESPONSE)
        self.transport.close()


class GuardedH11Protocol(HeaderDeadline, H11Protocol):
    """h11 (``--http h11``), whose own cap on headers is set from the same setting."""


class GuardedHttpToolsProtocol(HeaderDeadline, HttpToolsProtocol):
    """httptools (what the gateway runs on), which also counts the headers' bytes: the
    parser itself takes headers of any size."""

    _header_bytes = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes:
            # Raised inside the parser: uvicorn answers 400 and closes the connection.
            raise HeadersTooLarge(f"request headers over {self.max_header_bytes} bytes")


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of ``uvicorn.run`` for the gateway."""
    limits = settings.gateway_server
    return {
        "http": GuardedHttpToolsProtocol,
        "timeout_keep_alive": math.ceil(limits.keep_alive_ms / 1000),
        "limit_concurrency": limits.max_connections,
        "backlog": limits.backlog,
        "h11_max_incomplete_event_size": limits.max_header_bytes,
    }
