"""``GET /metrics``: Prometheus exposition of the gateway, with queue depths from RabbitMQ."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from producer.gateway.openapi import Auth, Reply, operation
from shared.metrics import QueueDepthCollector, exposition


@operation(
    "GET",
    "Prometheus metrics, with queue depths",
    auth=Auth.PUBLIC,
    replies=[Reply(200, "The Prometheus text exposition.", media_type="text/plain")],
)
async def metrics(request: Request) -> Response:
    collector: QueueDepthCollector = request.app.state.queue_depths
    body = await run_in_threadpool(exposition, collector)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics, methods=["GET"])]
