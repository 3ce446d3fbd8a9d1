"""Worker pools as production runs them (``kai-messaging worker <channel>``), each under a
supervisor loop that restarts it when it exits, as systemd's ``Restart=always`` would."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from contextlib import suppress
from pathlib import Path

from shared.channels import Channel

ROOT = Path(__file__).resolve().parents[2]

#: Worker processes and threads per pool.
PROCESSES = 2
THREADS = 8
#: Seconds a supervisor waits before restarting an exited pool (systemd's RestartSec).
RESTART_DELAY = 0.5
#: Seconds a pool may take to finish in-flight work after SIGTERM before it is killed.
STOP_TIMEOUT = 30


class Pool:
    """One channel's pool and its supervisor thread."""

    def __init__(self, channel: Channel, env: dict[str, str], port: int, logs: Path) -> None:
        self.channel = channel
        self.env = env
        self.port = port
        self.log_path = logs / f"worker-{channel.value}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.exit_codes: list[int] = []
        self._supervising = True
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._supervise, name=f"supervise-{channel.value}")

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        with self._lock, open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cli",
                    "worker",
                    self.channel.value,
                    "--processes",
                    str(PROCESSES),
                    "--threads",
                    str(THREADS),
                    "--metrics-port",
                    str(self.port),
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT), **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _supervise(self) -> None:
        while True:
            process = self.process
            assert process is not None
            code = process.wait()
            if not self._supervising:
                return
            self.exit_codes.append(code)
            # Dramatiq exits 3 when the broker is unreachable at start and 1 when a worker
            # process died: both are the supervisor's cue to start the pool again.
            threading.Event().wait(RESTART_DELAY)
            if not self._supervising:
                return
            self.restarts += 1
            self._spawn()

    def worker_pids(self) -> list[int]:
        """The pool's worker processes (children of the Dramatiq main process)."""
        process = self.process
        if process is None or process.poll() is not None:
            return []
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                # fields[1] is the parent pid, fields[2] the process group.
                if int(fields[1]) == process.pid and int(fields[2]) == process.pid:
                    pids.append(int(entry.name))
        return pids

    def kill_random_worker(self, rng: random.Random) -> bool:
        pids = self.worker_pids()
        if not pids:
            return False
        with suppress(ProcessLookupError):
            os.kill(rng.choice(pids), signal.SIGKILL)
        return True

    def kill_all(self) -> None:
        """SIGKILL the whole pool, main process and workers: a host losing power. The
        supervisor starts it again."""
        process = self.process
        if process is not None and process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM to the main process only: it forwards it to its workers for a graceful
        stop (signalling the group would make each worker see it twice and die hard)."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        self._supervising = False
        self.terminate()
        process = self.process
        if process is not None and process.poll() is None:
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        if self._thread.is_alive():
            self._thread.join(5)


class Fleet:
    """A supervised pool per channel."""

    def __init__(self, env: dict[str, str], logs: Path, base_port: int) -> None:
        self.pools = {channel: Pool(channel, env, base_port + n, logs) for n, channel in enumerate(Channel)}

    def start(self) -> None:
        for pool in self.pools.values():
            pool.start()

    def stop(self) -> None:
        for pool in self.pools.values():
            pool._supervising = False
            pool.terminate()  # all at once: they drain in parallel
        for pool in self.pools.values():
            pool.stop()

    @property
    def restarts(self) -> int:
        return sum(p.restarts for p in self.pools.values())
