"""``/api/dead-letters/{channel}`` (server key): the messages a channel gave up on, as
``kai-messaging dlq`` shows them (:mod:`producer.dead_letters`), for the console.

Listing peeks without consuming; a page's cursor is how many dead letters the pages before
it showed (the queue has no other order to resume from). ``POST …/replay`` and ``POST
…/purge`` act on ``{"ids": [...]}``, or on every dead letter (up to a thousand a call) when
``ids`` is left out, and answer how many they handled.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from producer import dead_letters
from producer.gateway.auth import server_settings
from producer.gateway.bodies import parse, read_json_object
from producer.gateway.errors import ApiError
from producer.gateway.openapi import Auth, Reply, operation
from producer.gateway.openapi.views import DeadLetterPage, Handled
from producer.gateway.pagination import CURSOR, LIMIT, body, integer, page_request
from shared.channels import Channel
from shared.config import Settings


class Selection(BaseModel):
    """Which dead letters: the messages named, or all of them when ``ids`` is absent."""

    model_config = ConfigDict(extra="forbid")

    ids: list[str] | None = Field(default=None, max_length=dead_letters.MAX_LIMIT)


def _channel(request: Request) -> Channel:
    name = str(request.path_params["channel"]).replace("-", "_")
    try:
        return Channel(name)
    except ValueError:
        raise ApiError(
            404, "not_found", f"no channel {name!r}: {', '.join(c.value for c in Channel)}"
        ) from None


def _broker(settings: Settings) -> None:
    if settings.broker_url is None:
        raise ApiError(409, "no_broker", "the dead-letter queues live in RabbitMQ: set BROKER_URL")


@operation(
    "GET",
    "A channel's dead-lettered messages",
    auth=Auth.SERVER,
    params=(CURSOR, LIMIT),
    replies=[
        Reply(
            200,
            "A page of dead letters, oldest first, with what their messages say of the failure.",
            DeadLetterPage,
        )
    ],
    errors=(404, 409, 422),
)
async def list_dead(request: Request) -> JSONResponse:
    settings = server_settings(request)
    channel = _channel(request)
    _broker(settings)
    page = page_request(request, [integer])
    shown = int(page.after[0]) if page.after else 0
    found = await run_in_threadpool(
        dead_letters.list_dead, settings, channel, limit=min(shown + page.limit + 1, dead_letters.MAX_LIMIT)
    )
    items = found[shown : shown + page.limit]
    more = len(found) > shown + page.limit
    return JSONResponse(body(items, [shown + len(items)] if more else None))


async def _handled(
    request: Request, handle: Callable[[Settings, Channel, list[str] | None], int]
) -> JSONResponse:
    """Read which dead letters the request names, have ``handle`` act on them, say how many."""
    settings = server_settings(request)
    channel = _channel(request)
    _broker(settings)
    ids = parse(Selection, await read_json_object(request, settings.max_payload_bytes)).ids
    count = await run_in_threadpool(handle, settings, channel, ids)
    return JSONResponse({"count": count})


@operation(
    "POST",
    "Replay dead letters",
    auth=Auth.SERVER,
    body=Selection,
    body_required=False,
    replies=[Reply(200, "How many were given a new round of attempts.", Handled)],
    errors=(404, 409, 422),
)
async def replay_dead(request: Request) -> JSONResponse:
    return await _handled(
        request, lambda s, c, ids: dead_letters.replay_dead(s, c, ids=ids, limit=dead_letters.MAX_LIMIT)
    )


@operation(
    "POST",
    "Purge dead letters",
    auth=Auth.SERVER,
    body=Selection,
    body_required=False,
    replies=[Reply(200, "How many were dropped (their messages keep the failure).", Handled)],
    errors=(404, 409, 422),
)
async def purge_dead(request: Request) -> JSONResponse:
    return await _handled(request, lambda s, c, ids: dead_letters.purge_dead(s, c, ids=ids))


routes = [
    Route("/api/dead-letters/{channel:str}", list_dead, methods=["GET"]),
    Route("/api/dead-letters/{channel:str}/replay", replay_dead, methods=["POST"]),
    Route("/api/dead-letters/{channel:str}/purge", purge_dead, methods=["POST"]),
]
