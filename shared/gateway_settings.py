"""Settings of the gateway's HTTP server: how long a client may take to send a request,
how many connections one process serves, how large a request's headers may be.

Kept apart from :mod:`shared.config` (which gains one field), as the rate limits' settings
are. Durations are in milliseconds, like the product's other durations. These bound what one
gateway process gives a slow or hostile client; a reverse proxy in front (see the README)
is still what should face the internet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shared.envvars import parse_int

#: A request's complete headers must arrive within this of its connection opening or of the
#: previous response on it (nginx's client_header_timeout is 60 s; our clients are programs
#: and browsers on ordinary links, which send headers in one packet).
DEFAULT_HEADER_TIMEOUT_MS = 10_000
#: A request's whole body must arrive within this once the handler starts reading it: an
#: 8 MiB batch at 300 kB/s.
DEFAULT_BODY_TIMEOUT_MS = 30_000
#: An idle keep-alive connection is closed after this (uvicorn's default, in seconds).
DEFAULT_KEEP_ALIVE_MS = 5_000
#: Connections (and requests in progress) one gateway process serves at once; past it new
#: requests are answered 503. Below the usual 1,024 open-file limit, leaving room for the
#: process's database, broker and Redis connections.
DEFAULT_MAX_CONNECTIONS = 900
#: Connections the kernel queues for accepting (uvicorn's default).
DEFAULT_BACKLOG = 2048
#: Most bytes of a request line and headers: 64 KiB (nginx allows 4 x 8 KiB).
DEFAULT_MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True)
class GatewayServerSettings:
    #: GATEWAY_HEADER_TIMEOUT (ms)
    header_timeout_ms: int = DEFAULT_HEADER_TIMEOUT_MS
    #: GATEWAY_BODY_TIMEOUT (ms)
    body_timeout_ms: int = DEFAULT_BODY_TIMEOUT_MS
    #: GATEWAY_KEEP_ALIVE_TIMEOUT (ms, rounded up to whole seconds)
    keep_alive_ms: int = DEFAULT_KEEP_ALIVE_MS
    #: GATEWAY_MAX_CONNECTIONS
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    #: GATEWAY_BACKLOG
    backlog: int = DEFAULT_BACKLOG
    #: GATEWAY_MAX_HEADER_BYTES
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES

    @classmethod
    def from_env(cls, get: Callable[[str], str | None]) -> GatewayServerSettings:
        def integer(name: str, default: int, minimum: int) -> int:
            return parse_int(name, get(name) or str(default), minimum=minimum)

        return cls(
            header_timeout_ms=integer("GATEWAY_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT_MS, 100),
            body_timeout_ms=integer("GATEWAY_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT_MS, 100),
            keep_alive_ms=integer("GATEWAY_KEEP_ALIVE_TIMEOUT", DEFAULT_KEEP_ALIVE_MS, 1),
            max_connections=integer("GATEWAY_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS, 1),
            backlog=integer("GATEWAY_BACKLOG", DEFAULT_BACKLOG, 1),
            max_header_bytes=integer("GATEWAY_MAX_HEADER_BYTES", DEFAULT_MAX_HEADER_BYTES, 1024),
        )
