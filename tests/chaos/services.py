"""Private service instances a chaos run may stop and start without touching the machine's
own: a PostgreSQL cluster and a redis-server, on their own loopback ports, their data in
temporary directories, stopped by PID and removed at the end."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import suppress
from pathlib import Path

#: Loopback ports of the private instances (the machine's own use 5432 and 6379).
POSTGRES_PORT = 5433
REDIS_PORT = 6380
#: Connections the private cluster allows: pools x processes x threads, with room.
POSTGRES_MAX_CONNECTIONS = 400
#: Seconds a service gets to come up or go down.
STARTUP_TIMEOUT = 30


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"chaos: {name} is not installed")
    return found


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def wait_port(what: str, port: int, up: bool) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while port_open(port) != up:
        if time.monotonic() > deadline:
            raise SystemExit(f"chaos: {what} did not {'start' if up else 'stop'} on port {port}")
        time.sleep(0.1)


class Postgres:
    """A throwaway cluster (trust auth on loopback), run as the ``postgres`` user."""

    def __init__(self, port: int = POSTGRES_PORT) -> None:
        if port_open(port):
            raise SystemExit(f"chaos: port {port} is taken; the private PostgreSQL needs it")
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="kai-chaos-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        subprocess.run(
            [_binary("initdb"), "-D", str(self.dir / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            user="postgres",
            check=True,
            capture_output=True,
        )
        self.start()

    def start(self) -> None:
        log = open(self.dir / "postgres.log", "ab")  # noqa: SIM115 - kept for the server's life
        self.process = subprocess.Popen(
            [
                _binary("postgres"),
                "-D",
                str(self.dir / "data"),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"port={self.port}",
                "-c",
                f"unix_socket_directories={self.dir}",
                "-c",
                f"max_connections={POSTGRES_MAX_CONNECTIONS}",
                "-c",
                "fsync=on",
            ],
            user="postgres",
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_port("PostgreSQL", self.port, up=True)

    def stop(self, sig: int = signal.SIGINT) -> None:
        """SIGINT: fast shutdown (clients are disconnected, work in flight rolls back)."""
        if self.process is None or self.process.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.kill(self.process.pid, sig)
        try:
            self.process.wait(STARTUP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    """A redis-server with no persistence."""

    def __init__(self, port: int = REDIS_PORT) -> None:
        if port_open(port):
            raise SystemExit(f"chaos: port {port} is taken; the private Redis needs it")
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                _binary("redis-server"),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_port("Redis", self.port, up=True)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STARTUP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
