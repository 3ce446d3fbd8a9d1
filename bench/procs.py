"""Child processes of a benchmark run: peers, gateways and worker pools, always stopped.

Every child gets its own process group so stopping it also stops what it forked (uvicorn and
Dramatiq both fork worker processes), and so a whole pool can be held still (SIGSTOP) and let
go again (SIGCONT) at once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

#: Children run from the repository root so ``python -m bench.…`` finds this package.
REPO_ROOT = Path(__file__).resolve().parent.parent

#: How long a child may take to start listening or to stop before we give up on it.
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def launch(argv: Sequence[str], env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own process group; the caller stops it (``kill`` or ``child``)."""
    return subprocess.Popen(
        list(argv),
        env={**os.environ, **(env or {})},
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill(process: subprocess.Popen[bytes]) -> None:
    """Kill the whole group at once: for children whose work is over, so nothing of their own
    shutdown (Dramatiq's takes seconds, waking every thread) is left to wait for."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(STOP_TIMEOUT_S)


def group_signal(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        # The child's own shutdown first (uvicorn's and Dramatiq's supervisors stop their
        # workers); signalling the whole group at once makes Dramatiq's workers wait out
        # their shutdown timeout instead.
        process.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT_S)
    # Whatever is left of the group (a hung child, an orphaned worker) is killed.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(STOP_TIMEOUT_S)


@contextmanager
def child(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` in its own process group for the duration of the block."""
    process = launch(argv, env)
    try:
        yield process
    finally:
        _stop(process)


def wait_ready_line(process: subprocess.Popen[bytes]) -> None:
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != b"ready":
        raise RuntimeError(f"{process.args!r} did not start (exit {process.poll()})")


def wait_http(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {START_TIMEOUT_S} s")


@contextmanager
def http_peer(*, delay_ms: int = 0, fail_first: bool = False) -> Iterator[str]:
    """A fast local HTTP receiver; yields its base URL."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.peers", "http", "--port", str(port), "--delay-ms", str(delay_ms)]
    if fail_first:
        argv.append("--fail-first")
    with child(argv) as process:
        wait_ready_line(process)
        yield f"http://127.0.0.1:{port}"


@contextmanager
def smtp_peer() -> Iterator[int]:
    """A fast local SMTP server; yields its port."""
    port = free_port()
    with child([sys.executable, "-m", "bench.peers", "smtp", "--port", str(port)]) as process:
        wait_ready_line(process)
        yield port


def peer_stats(base_url: str) -> dict[str, object]:
    stats: dict[str, object] = httpx.get(f"{base_url}/_stats", timeout=10).json()
    return stats


def reset_peer(base_url: str) -> None:
    httpx.post(f"{base_url}/_reset", timeout=10)


def kai(args: Sequence[str]) -> list[str]:
    """argv for the ``kai-messaging`` command of this environment."""
    return [sys.executable, "-m", "cli", *args]
