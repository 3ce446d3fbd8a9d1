"""The periodic duty thread: it waits for its interval, or less when its duty says something
is due sooner."""

from __future__ import annotations

import threading
import time

from workers.periodic import PeriodicThread


def test_a_duty_with_something_due_sooner_than_its_interval_runs_then() -> None:
    """Given a 60 s interval and a duty due again in 0.2 s, then the second step comes long
    before the interval would have ended."""
    steps: list[float] = []
    second = threading.Event()

    def step() -> bool:
        steps.append(time.monotonic())
        if len(steps) == 2:
            second.set()
        return False

    duty = PeriodicThread("test", 60.0, step, next_due=lambda: 0.2)
    duty.start()
    try:
        assert second.wait(10), "the duty waited for its interval"
    finally:
        duty.stop()
    assert steps[1] - steps[0] >= 0.15


def test_without_anything_due_the_interval_holds() -> None:
    """Given nothing due (None), then the duty waits its interval: no second step within 0.5 s
    of a 60 s interval."""
    steps: list[float] = []

    def step() -> bool:
        steps.append(time.monotonic())
        return False

    duty = PeriodicThread("test", 60.0, step, next_due=lambda: None)
    duty.start()
    time.sleep(0.5)
    duty.stop()
    assert len(steps) == 1
