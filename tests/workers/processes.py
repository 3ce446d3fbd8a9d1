"""Worker pools started as production starts them (``kai-messaging worker <pools>``, the
Dramatiq CLI), each in a process group of its own so that a test can SIGKILL all of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcesses:
    """The pools a test started; :meth:`stop_all` ends those still running."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, pools: list[str], threads: int) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "cli", "worker", *pools, "--processes", "1", "--threads", str(threads)]
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self.env,
            start_new_session=True,  # its own process group, so the kill takes every child
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                # The Dramatiq main process forwards SIGTERM to its workers for a graceful
                # stop; signalling the whole group would make each worker see it twice and
                # kill itself hard.
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(5)
