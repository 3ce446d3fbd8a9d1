"""``GET /api/analytics`` (server key): engagement counts, rates and latencies per group and
interval, from the rollups (:mod:`producer.analytics`)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from producer import analytics
from producer.gateway.auth import server_settings
from producer.gateway.openapi import Auth, Param, Reply, operation
from producer.gateway.openapi.views import Analytics
from shared.db.rls import system_scope

PARAMS = [
    Param("from", "Start (RFC 3339 or a date, UTC when no offset); default: 7 days before `to`."),
    Param("to", "End, exclusive; default: now."),
    Param(
        "interval",
        "A series per group in buckets of an hour, a UTC day or a week from Monday; left out: totals only.",
        {"type": "string", "enum": list(analytics.INTERVALS)},
    ),
    Param(
        "groupBy",
        f"Comma-separated dimensions: {', '.join(analytics.GROUPS)}.",
    ),
    *(Param(name, f"Only messages with this {name}.") for name in analytics.GROUPS),
]


@operation(
    "GET",
    "Engagement analytics",
    auth=Auth.SERVER,
    params=PARAMS,
    replies=[Reply(200, "Counts, rates and latency percentiles per group.", Analytics)],
    errors=(422,),
    description="Messages are counted by the hour they were sent for (their cohort), so a rate compares "
    "the same messages however late their opens come. Whole-day ranges read the daily rollup.",
)
async def get_analytics(request: Request) -> JSONResponse:
    settings = server_settings(request)
    query = analytics.Query.parse(request.query_params)

    def read() -> dict[str, Any]:
        with system_scope(settings.database_url) as session:
            return analytics.run(session.connection(), query)

    return JSONResponse(await run_in_threadpool(read))


routes = [Route("/api/analytics", get_analytics, methods=["GET"])]
