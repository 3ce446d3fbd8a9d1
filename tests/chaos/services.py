"""Private service instances a chaos run may stop and start without touching the machine's
own: a PostgreSQL cluster, a redis-server and a RabbitMQ node, on their own loopback ports, their data in
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
RABBITMQ_PORT = 5673
#: The node's Erlang distribution port is this far above its AMQP port (RabbitMQ's own rule,
#: so it stays clear of the machine's node on 25672).
DIST_PORT_OFFSET = 20000
#: Connections the private cluster allows: pools x processes x threads, with room.
POSTGRES_MAX_CONNECTIONS = 400
#: Seconds a service gets to come up or go down.
STARTUP_TIMEOUT = 30
#: RabbitMQ takes longer (Erlang boot, Mnesia).
RABBITMQ_STARTUP_TIMEOUT = 90


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


class RabbitMQ:
    """A RabbitMQ node of its own (``kaichaos@localhost``) beside the machine's: its own
    AMQP and distribution ports, its data and logs in a directory the ``rabbitmq`` user owns,
    no plugins (their ports would clash). It registers with the machine's epmd; if none runs,
    the node starts one, and ``remove`` stops that one by PID."""

    NODE = "kaichaos@localhost"

    def __init__(self, port: int = RABBITMQ_PORT) -> None:
        if port_open(port):
            raise SystemExit(f"chaos: port {port} is taken; the private RabbitMQ needs it")
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="kai-chaos-rabbitmq-"))
        shutil.chown(self.dir, "rabbitmq", "rabbitmq")
        self.epmd_before = _pids_named("epmd")
        (self.dir / "rabbitmq-env.conf").write_text(
            f"NODENAME={self.NODE}\n"
            f"NODE_IP_ADDRESS=127.0.0.1\nNODE_PORT={port}\nDIST_PORT={port + DIST_PORT_OFFSET}\n"
            f"MNESIA_BASE={self.dir}/mnesia\nLOG_BASE={self.dir}/log\nPID_FILE={self.dir}/node.pid\n"
            f"ENABLED_PLUGINS_FILE={self.dir}/enabled_plugins\n"
            "ERL_EPMD_ADDRESS=127.0.0.1\n"
            'export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"\n'
        )
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text(f"listeners.tcp.1 = 127.0.0.1:{port}\n")
        for path in self.dir.iterdir():
            shutil.chown(path, "rabbitmq", "rabbitmq")
        self.env = {
            **os.environ,
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
        }

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def _ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["rabbitmqctl", "-n", self.NODE, *args], env=self.env, capture_output=True, text=True, check=False
        )

    def start(self) -> None:
        subprocess.run(["rabbitmq-server", "-detached"], env=self.env, check=True, capture_output=True)
        deadline = time.monotonic() + RABBITMQ_STARTUP_TIMEOUT
        # await_startup fails at once until the node has registered with epmd: ask again.
        while self._ctl("await_startup", "--timeout", "10").returncode != 0:
            if time.monotonic() > deadline:
                raise SystemExit(f"chaos: the private RabbitMQ did not start; logs in {self.dir}/log")
            time.sleep(0.5)

    def node_pid(self) -> int | None:
        with suppress(OSError, ValueError):
            return int((self.dir / "node.pid").read_text().strip())
        return None

    def stop(self) -> None:
        """Stop the node (messages on durable queues are kept on disk)."""
        pid = self.node_pid()
        if pid is None or not _alive(pid):
            return
        self._ctl("stop")
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        self.stop()
        for pid in _pids_named("epmd") - self.epmd_before:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        shutil.rmtree(self.dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _pids_named(name: str) -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                if (entry / "comm").read_text().strip() == name:
                    pids.add(int(entry.name))
    return pids
