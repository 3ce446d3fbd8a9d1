"""Realtime inbox events: a hub per gateway process, Redis or in-process.

``REDIS_URL`` set: :class:`~shared.realtime.redis.RedisHub`, which reaches every gateway
process. Unset (the embedded default, gateway and workers in one process): the one
process-wide :class:`~shared.realtime.memory.MemoryHub`.
"""

from __future__ import annotations

import hashlib
import threading

from sqlalchemy.engine import make_url

from shared.config import Settings
from shared.realtime.base import Hub, InboxEvent, RealtimeError, TooManyStreams
from shared.realtime.memory import MemoryHub
from shared.realtime.redis import RedisHub

__all__ = [
    "Hub",
    "InboxEvent",
    "MemoryHub",
    "RealtimeError",
    "RedisHub",
    "TooManyStreams",
    "open_hub",
    "publisher",
]

_lock = threading.Lock()
_memory = MemoryHub()
_publishers: dict[str, Hub] = {}


def _scope(database_url: str) -> str:
    """Names the database by where it is, not by who connects (roles and passwords differ
    between the gateway and the workers)."""
    url = make_url(database_url)
    where = f"{url.get_backend_name()}://{url.host or ''}:{url.port or ''}/{url.database or ''}"
    return hashlib.sha256(where.encode()).hexdigest()[:16]


def open_hub(settings: Settings) -> Hub:
    """The hub a gateway app feeds its streams from (start it in the app's lifespan)."""
    if settings.redis_url is None:
        return _memory
    return RedisHub(settings.redis_url, _scope(settings.database_url))


def publisher(settings: Settings) -> Hub:
    """The process's shared hub for publishing (worker threads, request handlers)."""
    if settings.redis_url is None:
        return _memory
    key = f"{settings.redis_url} {settings.database_url}"
    with _lock:
        hub = _publishers.get(key)
        if hub is None:
            hub = RedisHub(settings.redis_url, _scope(settings.database_url))
            _publishers[key] = hub
        return hub
