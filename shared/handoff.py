"""Publishing on the embedded broker, from whichever process: ids handed to the runner.

Without BROKER_URL the broker is Dramatiq's in-memory one, and only the ``kai-messaging run``
process (the runner) consumes it: a producer in another process on the same ``./var`` (a
script using the Python API, ``kai-messaging send`` in a second terminal) has no way into
that memory. So on the embedded broker no producer publishes itself. The accepting
transaction writes the relay's marker with the row (:mod:`shared.relay`), as everywhere; the
runner's hand-off relay takes every marker a moment later and publishes it into its broker.
The marker is the queue between the processes: a send made while no runner is up waits in
it until one starts, and since one atomic take removes a marker, each id is published once,
whoever sent it.

Inside the runner, the relay registers here, so that a send made there wakes it at once
instead of waiting for its next poll (:func:`nudge`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

_lock = threading.Lock()
_wake: Callable[[], None] | None = None


def serve(wake: Callable[[], None]) -> None:
    """This process is the runner: ``wake`` makes its relay look for markers now."""
    global _wake
    with _lock:
        _wake = wake


def withdraw() -> None:
    """The runner's relay stopped: sends in this process leave their markers for the next one."""
    global _wake
    with _lock:
        _wake = None


def served_here() -> bool:
    """Whether this process runs the relay that publishes into the embedded broker."""
    return _wake is not None


def nudge() -> None:
    """New markers were committed: the relay of this process, if it has one, takes them now;
    elsewhere the runner finds them at its next poll."""
    wake = _wake
    if wake is not None:
        wake()
