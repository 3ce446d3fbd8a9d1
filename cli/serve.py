"""Serving the gateway from the command line.

The listening socket is bound before anything else starts, so a port that is taken is one
clear line (and exit code 1) instead of a traceback after migrations and workers have run.
Once the server answers requests, :func:`announce` prints the few lines a developer needs:
the dev API key and the URLs to open.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, TextIO

import uvicorn
from uvicorn.supervisors import Multiprocess

from shared.config import Settings
from shared.errors import ConfigError

#: Loggers that narrate a start-up at INFO (every migration applied, uvicorn's and the
#: asyncio middleware's "started"): the start-up block says it once, so `run` keeps them at
#: WARNING unless LOG_LEVEL=DEBUG asks for everything.
STARTUP_CHATTER = ("alembic", "uvicorn.error", "dramatiq.middleware.asyncio")

#: Addresses that mean "every interface": not something a browser can open.
_WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (as uvicorn binds its own), or a :class:`ConfigError`
    that says what to do when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is already in use (another kai-messaging?): stop it, "
                f"or choose another port with --port N or PORT=N"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)  # uvicorn's worker processes serve the same socket
    return sock


def quiet_startup_chatter(log_level: str) -> None:
    if log_level.upper() == "DEBUG":
        return
    for name in STARTUP_CHATTER:
        logging.getLogger(name).setLevel(logging.WARNING)


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that calls ``on_started`` once it accepts connections: only then is
    it true to say it is listening."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def serve(
    sock: socket.socket, app: Any, on_started: Callable[[], None], *, workers: int = 1, **options: Any
) -> None:
    """Serve ``app`` on the bound ``sock`` until SIGINT or SIGTERM, then return normally.

    uvicorn shuts down gracefully on either signal and then raises it again; SIGTERM's
    default action would end the process before the caller's clean-up runs, so both arrive
    here as KeyboardInterrupt instead. With ``workers`` above 1, ``app`` is an import string
    and uvicorn's supervisor serves ``sock`` from that many processes (it handles the signals
    itself); ``on_started`` is called as it starts them."""
    config = uvicorn.Config(app, log_config=None, access_log=False, workers=workers, **options)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        if workers > 1:
            on_started()
            Multiprocess(config, sockets=[sock]).run()
        else:
            _AnnouncingServer(config, on_started).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()


def browsable(host: str, port: int) -> str:
    """The base URL a browser on this machine opens for a server bound to ``host``."""
    shown = _WILDCARD_HOSTS.get(host, f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}"


@dataclass(frozen=True)
class StartupBlock:
    """What `kai-messaging run` prints once it serves."""

    base_url: str
    settings: Settings
    #: The paths the app serves among those worth opening (``/docs`` only where it exists).
    paths: frozenset[str]

    def lines(self) -> list[str]:
        settings = self.settings
        out = [f"KAI Messaging is listening on {self.base_url}"]
        if settings.is_production:
            out.append("  mode       configured services (DATABASE_URL / BROKER_URL / REDIS_URL)")
            out.append("  API key    one of API_KEYS")
        else:
            out.append(
                f"  mode       embedded: SQLite and outbox files under {settings.var_dir}/, "
                "in-process broker (development only)"
            )
            key_file = settings.var_dir / "dev-api-key"
            key = settings.api_keys[0] if settings.api_keys else ""
            if key_file.exists() and key_file.read_text().strip() == key:
                out.append(f"  API key    {key}   (also in {key_file})")
            else:  # a configured key is a secret: not printed
                out.append("  API key    one of API_KEYS")
        for label, path in (
            ("API docs", "/docs"),
            ("inbox", "/inbox"),
            ("health", "/healthz"),
        ):
            if path in self.paths:
                out.append(f"  {label:<10} {self.base_url}{path}")
        out.append("  port       PORT=8001 make run, or kai-messaging run --port 8001")
        out.append("  stop       Ctrl+C")
        return out

    def print(self, stream: TextIO) -> None:
        stream.write("\n".join(self.lines()) + "\n")
        stream.flush()
