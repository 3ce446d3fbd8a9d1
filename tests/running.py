"""``kai-messaging run`` as a developer starts it: a real process in a directory of its own
(its ``./var``), on the embedded defaults, its output kept in files the tests read."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]

#: Variables that would switch a real component on (or fix the credentials): an embedded run
#: must not see them.
REAL_COMPONENT_VARS = (
    "DATABASE_URL",
    "MIGRATION_DATABASE_URL",
    "BROKER_URL",
    "REDIS_URL",
    "API_KEYS",
    "USER_TOKEN_SECRET",
    "WEBHOOK_SECRET",
    "EMAIL_HOST",
    "TWILIO_ACCOUNT_SID",
    "PORT",
    "HOST",
    "KAI_VAR_DIR",
)

#: The last line of the block `run` prints once it serves.
BLOCK_END = "  stop "


def embedded_env(**extra: str) -> dict[str, str]:
    """The environment of a developer's shell with nothing configured, able to import the
    project from any directory."""
    env = {k: v for k, v in os.environ.items() if k not in REAL_COMPONENT_VARS}
    env["PYTHONPATH"] = str(ROOT)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def cli(
    *argv: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """One ``kai-messaging`` command, as a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *argv],
        cwd=cwd,
        env=env if env is not None else embedded_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class Running:
    """A started ``kai-messaging run``; :meth:`stop` ends it with SIGTERM, as Ctrl+C would."""

    process: subprocess.Popen[bytes]
    workdir: Path
    port: int
    out: Path
    err: Path
    exit_code: int | None = field(default=None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def var(self) -> Path:
        return self.workdir / "var"

    @property
    def key(self) -> str:
        return (self.var / "dev-api-key").read_text().strip()

    def client(self) -> httpx.Client:
        """An HTTP client of the gateway holding the dev API key."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=10)

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def stop(self) -> int:
        if self.exit_code is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.exit_code = self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.exit_code = self.process.wait()
        return self.exit_code


def start(workdir: Path, *argv: str, env: dict[str, str] | None = None, timeout: float = 90) -> Running:
    """Start ``kai-messaging run *argv`` in ``workdir`` and wait for its start-up block."""
    out, err = workdir / "run.stdout", workdir / "run.stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "run", *argv],
            cwd=workdir,
            env=env if env is not None else embedded_env(),
            stdout=stdout,
            stderr=stderr,
        )
    running = Running(process, workdir, 0, out, err)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"kai-messaging run exited {process.returncode}: {running.stderr()[-2000:]}")
        return BLOCK_END in running.stdout()

    try:
        wait_until(ready, timeout=timeout, message=lambda: f"no start-up block: {running.stderr()[-2000:]}")
    except BaseException:
        running.stop()
        raise
    first = running.stdout().splitlines()[0]  # "KAI Messaging is listening on http://…:PORT"
    running.port = int(first.rsplit(":", 1)[1])
    return running
