"""Idempotency keys: whose they are, and which request first used them.

A caller's key is unique within its scope only, so one caller can neither learn another's
message ids nor have its own message dropped by choosing the same key: a server key's scope
is named by its fingerprint (the key itself is never stored), a user token's by a hash of
its user, and the Python API has one of its own. The keys the service makes itself (event
rules, webhook fan-out) keep the empty scope.

With a key already used in its scope, the same request (same fingerprint) gets the first
message's id, as a retry should; a different request is refused
(:class:`~shared.errors.IdempotencyKeyReused`, HTTP 409), following Stripe
(https://docs.stripe.com/api/idempotent_requests).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Set

from pydantic import BaseModel

#: The scope of keys given through the Python API (and the CLI, which uses it).
PYTHON_API_SCOPE = "api"


def server_key_scope(key_fingerprint: str) -> str:
    return f"key:{key_fingerprint}"


def user_scope(user_id: str) -> str:
    # Hashed: a user id is up to 255 characters and the scope column holds 64.
    return f"user:{hashlib.sha256(user_id.encode()).hexdigest()[:32]}"


def fingerprint(kind: str, request: BaseModel, *, exclude: Set[str] = frozenset()) -> str:
    """SHA-256 of ``request`` as validated, with its ``kind`` (a channel, ``event``), in one
    canonical JSON form: two requests spelled differently (key order, camelCase or
    snake_case) but asking for the same thing have the same fingerprint. ``exclude``: fields
    filled in after validation, which a repeat may see differently."""
    fields = request.model_dump(mode="json", exclude=set(exclude))
    canonical = json.dumps([kind, fields], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
