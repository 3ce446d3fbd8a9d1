"""``GET /api/fleet`` (server key): queue depths, consumers, delayed and dead-lettered
messages per channel, and the last minute's outcomes (:mod:`producer.fleet`), for the
console; what ``kai-messaging status`` prints and ``/metrics`` exports."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from producer import fleet
from producer.gateway.auth import server_settings
from producer.gateway.openapi import Auth, Reply, operation
from producer.gateway.openapi.views import Fleet


@operation(
    "GET",
    "How the fleet's queues stand",
    auth=Auth.SERVER,
    replies=[
        Reply(200, "Per queue: depth, consumers, delayed, dead-lettered, the last minute's outcomes.", Fleet)
    ],
    errors=(503,),
)
async def get_fleet(request: Request) -> JSONResponse:
    settings = server_settings(request)
    statuses = await run_in_threadpool(fleet.fleet_status, settings, ("events",))
    return JSONResponse(fleet.view(statuses, settings))


routes = [Route("/api/fleet", get_fleet, methods=["GET"])]
