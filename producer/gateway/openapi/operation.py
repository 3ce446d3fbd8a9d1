"""How an endpoint describes itself for ``/openapi.json``: an :class:`Operation` attached to
the endpoint function with :func:`operation`, right where the endpoint is written.

The document is built from the application's routes (:mod:`.document`), so an endpoint that
is served but not described makes the application refuse to start, and the description of
a request body is the pydantic model the endpoint validates it with.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel

F = TypeVar("F", bound=Callable[..., Any])

#: Attribute of an endpoint function holding its operations by HTTP method.
ATTRIBUTE = "__openapi_operations__"


class Auth(Enum):
    """Who may call an operation (README, "HTTP API": server keys and user tokens)."""

    #: No credential, like ``/healthz``.
    PUBLIC = "public"
    #: A server key from ``API_KEYS``; a user token gets 403.
    SERVER = "server"
    #: A user token, or a server key naming the user with ``X-User-Id``.
    USER = "user"
    #: Like USER, also accepting a user token in the ``access_token`` query parameter.
    USER_OR_QUERY_TOKEN = "user_or_query_token"
    #: A server key for everyone's records (``X-User-Id`` narrows it to one user's), or a
    #: user token for its own user's.
    SERVER_OR_USER = "server_or_user"


@dataclass(frozen=True)
class Param:
    """A query or header parameter; ``schema`` is JSON Schema."""

    name: str
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    location: str = "query"
    required: bool = False


@dataclass(frozen=True)
class Reply:
    """A successful response: a JSON body described by ``model`` (or any of several), another
    media type, or no body at all (``media_type=None``)."""

    status: int
    description: str
    model: type[BaseModel] | tuple[type[BaseModel], ...] | None = None
    media_type: str | None = "application/json"

    @property
    def models(self) -> tuple[type[BaseModel], ...]:
        if self.model is None:
            return ()
        return self.model if isinstance(self.model, tuple) else (self.model,)


@dataclass(frozen=True)
class Operation:
    method: str
    summary: str
    auth: Auth
    replies: Sequence[Reply]
    #: The request body: the model the endpoint validates it with, or any of several.
    body: Sequence[type[BaseModel]] = ()
    body_required: bool = True
    params: Sequence[Param] = ()
    #: Error statuses beyond those implied by ``auth`` and ``body`` (e.g. 404, 409, 503).
    errors: Sequence[int] = ()
    description: str | None = None


def operation(
    method: str,
    summary: str,
    *,
    auth: Auth,
    replies: Sequence[Reply],
    body: type[BaseModel] | Sequence[type[BaseModel]] = (),
    body_required: bool = True,
    params: Sequence[Param] = (),
    errors: Sequence[int] = (),
    description: str | None = None,
) -> Callable[[F], F]:
    """Describe what ``method`` does on the decorated endpoint; stack one per method."""
    described = Operation(
        method=method.upper(),
        summary=summary,
        auth=auth,
        replies=tuple(replies),
        body=(body,) if isinstance(body, type) else tuple(body),
        body_required=body_required,
        params=tuple(params),
        errors=tuple(errors),
        description=description,
    )

    def attach(endpoint: F) -> F:
        existing: dict[str, Operation] = dict(getattr(endpoint, ATTRIBUTE, {}))
        if described.method in existing:
            raise ValueError(f"{endpoint.__name__} describes {described.method} twice")
        existing[described.method] = described
        setattr(endpoint, ATTRIBUTE, existing)
        return endpoint

    return attach


def operations_of(endpoint: Callable[..., Any]) -> Mapping[str, Operation]:
    found: Mapping[str, Operation] = getattr(endpoint, ATTRIBUTE, {})
    return found
