"""The pool's start-up watchdog (cli/boot_watchdog.py): a worker that died during start-up
and that Dramatiq's main process never reaps ends the pool; one that is reaped does not."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from cli import boot_watchdog
from tests.waiting import wait_until


def test_a_dead_unreaped_child_is_seen_as_a_zombie_of_its_parent() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        wait_until(lambda: boot_watchdog.children(os.getpid()).get(child.pid) == "Z", timeout=10)
    finally:
        child.wait()
    assert child.pid not in boot_watchdog.children(os.getpid())


def test_a_child_dead_for_long_enough_and_never_reaped_is_stuck() -> None:
    dead_since: dict[int, float] = {}

    assert boot_watchdog.stuck_since(dead_since, {10: "S", 11: "Z"}, now=100.0) == 100.0
    assert boot_watchdog.stuck_since(dead_since, {10: "S", 11: "Z"}, now=130.0) == 100.0
    # Reaped (Dramatiq saw it and shuts the pool down itself): no longer counted.
    assert boot_watchdog.stuck_since(dead_since, {10: "S"}, now=131.0) is None


def test_the_watchdog_ends_a_start_up_whose_dead_worker_is_never_reaped() -> None:
    ended: list[list[int]] = []
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        boot_watchdog.watch(0.2, interval_s=0.05, end=ended.append)
        wait_until(lambda: bool(ended), timeout=10, message="the stuck start-up was not ended")
        assert child.pid in ended[0]
    finally:
        child.wait()


def test_the_watchdog_stops_once_dramatiq_has_started() -> None:
    ended: list[list[int]] = []
    done = threading.Event()
    started = threading.Thread(target=done.wait, name="Thread-1 (watch_logs)")
    started.start()
    try:
        watchdog = boot_watchdog.watch(0.2, interval_s=0.05, end=ended.append)
        watchdog.join(5)
        assert not watchdog.is_alive() and ended == []
    finally:
        done.set()
        started.join()
