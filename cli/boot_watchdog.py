"""A pool whose start-up hangs is ended, so that its supervisor starts it again.

Dramatiq's main process waits for its worker processes to boot on locks it shares with them
(a ``multiprocessing.Event``, the fork registry), without a timeout. A worker killed while
it holds one of them (SIGKILL, the OOM killer) leaves the main process blocked for good: it
never reaps the dead worker, never starts the others' work, never exits, and the pool's
queue is consumed by nobody (seen in the worker-kill chaos scenario: a pool restarted, one
of its new workers killed during its boot, its queue untouched for minutes).

The watchdog is a thread of the main process that lives only until Dramatiq's start-up is
over (its log watcher thread appears). If meanwhile a worker has died and stays unreaped for
``stuck_after_s`` (beyond Dramatiq's own wait for a booting worker), the start-up is stuck:
it kills the pool's processes and exits the main process with :data:`EXIT_STUCK`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

#: The main process's exit status after a stuck start-up (EX_SOFTWARE).
EXIT_STUCK = 70
#: Dramatiq's thread that starts once its start-up is done.
_STARTED_THREAD = "watch_logs"


def children(parent: int) -> dict[int, str]:
    """The processes whose parent is ``parent``, with their state letter (``Z``: dead and
    not yet reaped). Read from /proc, without reaping anything."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid …": comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == parent:
            found[int(entry.name)] = fields[0]
    return found


def stuck_since(dead_since: dict[int, float], states: dict[int, str], now: float) -> float | None:
    """Update ``dead_since`` (pid → when first seen dead) from ``states``; the earliest time a
    still unreaped worker was seen dead, or None."""
    for pid in list(dead_since):
        if states.get(pid) != "Z":
            del dead_since[pid]  # reaped: Dramatiq saw it
    for pid, state in states.items():
        if state == "Z":
            dead_since.setdefault(pid, now)
    return min(dead_since.values(), default=None)


def _started() -> bool:
    return any(_STARTED_THREAD in thread.name for thread in threading.enumerate())


def watch(
    stuck_after_s: float,
    *,
    interval_s: float = 1.0,
    end: Callable[[list[int]], None] | None = None,
) -> threading.Thread:
    """Start the watchdog in this (the main) process."""
    me = os.getpid()

    def run() -> None:
        dead_since: dict[int, float] = {}
        while not _started():
            time.sleep(interval_s)
            states = children(me)
            since = stuck_since(dead_since, states, time.monotonic())
            if since is not None and time.monotonic() - since >= stuck_after_s:
                (end or _end)(list(states))
                return

    thread = threading.Thread(target=run, name="kai-boot-watchdog", daemon=True)
    thread.start()
    return thread


def _end(pids: list[int]) -> None:
    print(
        "kai-messaging: a worker process died during the pool's start-up and Dramatiq's main "
        "process is stuck waiting for it; stopping the pool so that it is started again",
        file=sys.stderr,
        flush=True,
    )
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    os._exit(EXIT_STUCK)
