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
instead of waiting for its next poll (:func:`nudge`). Any process can see what waits for the
runner (:func:`backlog`), and say so plainly (:func:`describe`): a process that is not the
runner has no broker of its own worth reporting on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from shared.config import Settings
from shared.db.models import PendingPublish, utcnow
from shared.db.rls import system_scope

#: A marker older than this means no runner is taking them: it polls several times a second.
UNSERVED_AFTER = timedelta(seconds=2)

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


@dataclass(frozen=True, slots=True)
class Backlog:
    """Ids accepted and not yet taken by the runner."""

    count: int
    #: When the oldest of them was accepted (None when there are none).
    oldest: datetime | None

    def unserved(self, now: datetime) -> bool:
        """Whether they have waited longer than a living runner lets them."""
        return self.oldest is not None and now - self.oldest > UNSERVED_AFTER


def backlog(settings: Settings) -> Backlog:
    """What waits for the runner in the database of ``settings`` (embedded broker only: with
    RabbitMQ, the markers are the publishes in flight and the relay's leftovers)."""
    with system_scope(settings.database_url) as session:
        count, oldest = session.execute(select(func.count(), func.min(PendingPublish.created_at))).one()
    return Backlog(int(count), oldest)


def describe(settings: Settings) -> str:
    """The embedded broker as this process knows it, in a sentence for ``status``/``health``."""
    if served_here():
        return "embedded: in this process"
    waiting = backlog(settings)
    text = (
        "embedded: in the memory of the 'kai-messaging run' process, not visible from here; "
        f"{waiting.count} message(s) waiting for it"
    )
    if waiting.unserved(utcnow()):
        seconds = UNSERVED_AFTER.total_seconds()
        text += f", some for over {seconds:.0f} s: is 'kai-messaging run' up in this directory?"
    return text
