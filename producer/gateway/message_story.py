"""``GET /api/messages/{id}/story`` and ``POST /api/messages/{id}/replay`` (server key): a
message's payload (secrets masked) and logged attempts, and replaying one that ended
(:mod:`producer.message_story`), for the console."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from producer import message_story
from producer.gateway.auth import server_settings
from producer.gateway.errors import ApiError
from producer.gateway.openapi import Auth, Reply, operation
from producer.gateway.openapi.views import MessageStory, Queued
from shared.webhooks.replay import ReplayRefused


@operation(
    "GET",
    "A message's payload and attempts",
    auth=Auth.SERVER,
    replies=[
        Reply(
            200,
            "The stored payload with credentials masked, and the logged attempts, newest first.",
            MessageStory,
        )
    ],
    errors=(404,),
)
async def get_story(request: Request) -> JSONResponse:
    settings = server_settings(request)
    found = await run_in_threadpool(message_story.story, settings, str(request.path_params["message_id"]))
    return JSONResponse(found)


@operation(
    "POST",
    "Send a message that ended again",
    auth=Auth.SERVER,
    body_required=False,
    replies=[Reply(202, "Enqueued again.", Queued)],
    errors=(404, 409),
    description="A failed message of any channel gets a fresh round of its channel's retries; a webhook "
    "that ended otherwise gets one more attempt (receivers drop a `webhook-id` they have). 409 "
    "`not_replayable` for a message on its way, or an email or SMS that was sent.",
)
async def replay_message(request: Request) -> JSONResponse:
    settings = server_settings(request)
    try:
        message_id = await run_in_threadpool(
            message_story.replay, settings, str(request.path_params["message_id"])
        )
    except ReplayRefused as exc:
        raise ApiError(409, "not_replayable", str(exc)) from None
    return JSONResponse({"id": message_id, "status": "queued"}, status_code=202)


routes = [
    Route("/api/messages/{message_id:str}/story", get_story, methods=["GET"]),
    Route("/api/messages/{message_id:str}/replay", replay_message, methods=["POST"]),
]
