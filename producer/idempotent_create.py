"""Creating a resource at most once per idempotency key (templates, rules, webhook endpoints).

A create that carries a key records it (``creation_idempotency_keys``) in the transaction
that creates the resource. The same key again in the same scope, with the same request
(same fingerprint, :func:`producer.idempotency.fingerprint`), creates nothing and gets the
resource the first request created, as it is now (404 if it was deleted since); with another
request it is refused (:class:`~shared.errors.IdempotencyKeyReused`, 409), as sends are.
Two requests racing with one key: the key is inserted before the resource is created, so the
later request fails at that insert (having created nothing) and is then answered as the
repeat it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from producer.idempotency import fingerprint
from shared.db.models import CreationKey, utcnow
from shared.db.session import session_scope
from shared.tracking import key_reused


@dataclass(frozen=True)
class IdempotencyKey:
    """A caller's key and the scope it belongs to."""

    scope: str
    key: str


@dataclass(frozen=True)
class Created:
    """The created resource's view, and whether it was created by an earlier request."""

    view: dict[str, Any]
    replayed: bool


def create_once(
    database_url: str,
    key: IdempotencyKey | None,
    resource_type: str,
    given: BaseModel,
    create: Callable[[Session], str],
    show: Callable[[Session, str], dict[str, Any]],
) -> Created:
    """Run ``create`` (which returns the new resource's id) unless ``key`` already created
    one for this request; ``show`` makes the answer from a resource id."""
    request = fingerprint(f"{resource_type}.create", given)

    def attempt() -> Created:
        with session_scope(database_url) as session:
            if key is None:
                return Created(show(session, create(session)), replayed=False)
            earlier = session.get(CreationKey, (key.key, key.scope))
            if earlier is not None:
                if earlier.request_fingerprint != request:
                    raise key_reused(key.key)
                return Created(show(session, earlier.resource_id), replayed=True)
            # The key is claimed before the resource is created: a concurrent holder of the
            # key makes this insert wait for its commit (PostgreSQL) or for the write lock
            # (SQLite), then fail, so the create below never runs twice for one key.
            claimed = CreationKey(
                idempotency_key=key.key,
                idempotency_scope=key.scope,
                request_fingerprint=request,
                resource_type=resource_type,
                resource_id="",
                created_at=utcnow(),
            )
            session.add(claimed)
            session.flush()
            claimed.resource_id = create(session)
            session.flush()
            return Created(show(session, claimed.resource_id), replayed=False)

    try:
        return attempt()
    except IntegrityError:
        if key is None:
            raise
        return attempt()  # a concurrent request with this key committed first: answer as its repeat
