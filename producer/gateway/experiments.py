"""``/api/experiments`` (server key): A/B and multivariate experiments on templates
(:mod:`shared.templates.experiments`), their results, stopping and concluding them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from producer.analytics import COUNTER_NAMES
from producer.gateway import pagination
from producer.gateway.auth import server_settings
from producer.gateway.bodies import parse, read_json_object
from producer.gateway.openapi import Auth, Param, Reply, operation
from producer.gateway.openapi.views import ExperimentList, ExperimentView, ExperimentWithResults
from shared import experiment_stats
from shared.db.models import Experiment
from shared.db.rls import system_scope
from shared.templates import experiments


def view(row: Experiment) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "template": row.template_key,
        "channel": row.channel,
        "locale": row.locale,
        "templateVersion": row.template_version,
        "status": row.status,
        "metric": row.metric,
        "control": row.control,
        "variants": row.variants,
        "confidence": row.confidence,
        "minSample": row.min_sample,
        "autoPromote": row.auto_promote,
        "winner": row.winner,
        "promotedVersion": row.promoted_version,
        "createdAt": row.created_at.isoformat(),
        "endedAt": row.ended_at.isoformat() if row.ended_at else None,
    }


def view_with_results(session: Session, row: Experiment) -> dict[str, Any]:
    found = experiments.results(session, row)
    results = [
        {
            "name": name,
            "funnel": {shown: found.funnels[name][counter] for counter, shown in COUNTER_NAMES.items()},
            "trials": arm.trials,
            "successes": arm.successes,
            "rate": round(arm.successes / arm.trials, 6) if arm.trials else None,
        }
        for name, arm in found.arms.items()
    ]
    comparisons = [
        {
            "variant": c.name,
            "rate": c.rate,
            "controlRate": c.control_rate,
            "difference": c.difference,
            "lift": c.lift,
            "confidenceInterval": [c.ci_low, c.ci_high],
            "z": c.z,
            "pValue": c.p_value,
            "alpha": c.alpha,
            "significant": c.significant,
            "verdict": c.verdict,
        }
        for c in found.comparisons
    ]
    best = experiment_stats.best(found.comparisons)
    return {
        **view(row),
        "test": "two-proportion z-test",
        "results": results,
        "comparisons": comparisons,
        "best": best,
    }


@operation(
    "POST",
    "Start an experiment on a template",
    auth=Auth.SERVER,
    body=experiments.ExperimentInput,
    replies=[Reply(201, "The experiment, running.", ExperimentView)],
    errors=(409,),
    description="Each variant but the control replaces some parts of the template's current version and "
    "is checked as a template would be when saved. From now on (within a few seconds in every process), "
    "each new message of the template gets a variant chosen from its recipient: the same user always "
    "the same one.",
)
async def create_experiment(request: Request) -> JSONResponse:
    settings = server_settings(request)
    given = parse(experiments.ExperimentInput, await read_json_object(request, settings.max_payload_bytes))

    def write() -> dict[str, Any]:
        with system_scope(settings.database_url) as session:
            return view(experiments.create(session, settings, given))

    return JSONResponse(await run_in_threadpool(write), status_code=201)


#: What a cursor of the experiments holds: the last one's (createdAt, id).
CURSOR = (pagination.moment, pagination.text)


@operation(
    "GET",
    "Experiments, oldest first",
    auth=Auth.SERVER,
    params=[*pagination.PARAMS, Param("template", "Only those of this template key.")],
    replies=[Reply(200, "A page of experiments; `nextCursor` is null on the last page.", ExperimentList)],
    errors=(422,),
)
async def list_experiments(request: Request) -> JSONResponse:
    settings = server_settings(request)
    page = pagination.page_request(request, CURSOR)
    template = request.query_params.get("template") or None

    def read() -> dict[str, Any]:
        with system_scope(settings.database_url) as session:
            rows, more = experiments.list_page(session, page.after, page.limit, template)
            return pagination.body([view(row) for row in rows], more)

    return JSONResponse(await run_in_threadpool(read))


@operation(
    "GET",
    "An experiment and its results",
    auth=Auth.SERVER,
    replies=[Reply(200, "Each variant's funnel and its comparison with the control.", ExperimentWithResults)],
    errors=(404,),
    description="Each variant is compared with the control by a two-proportion z-test on the experiment's "
    "metric over messages sent, at the experiment's confidence divided among the comparisons (Bonferroni); "
    "no verdict before both arms have `minSample` messages.",
)
async def get_experiment(request: Request) -> JSONResponse:
    settings = server_settings(request)

    def read() -> dict[str, Any]:
        with system_scope(settings.database_url) as session:
            return view_with_results(session, experiments.get(session, request.path_params["experiment_id"]))

    return JSONResponse(await run_in_threadpool(read))


@operation(
    "POST",
    "Stop an experiment",
    auth=Auth.SERVER,
    replies=[
        Reply(200, "The experiment, stopped: nobody is assigned any more, the results stay.", ExperimentView)
    ],
    errors=(404, 409),
)
async def stop_experiment(request: Request) -> JSONResponse:
    settings = server_settings(request)

    def write() -> dict[str, Any]:
        with system_scope(settings.database_url) as session:
            return view(experiments.stop(session, request.path_params["experiment_id"]))

    return JSONResponse(await run_in_threadpool(write))


class Conclusion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Left out: the variant significantly better than the control (409 when there is none).
    variant: str | None = None


@operation(
    "POST",
    "Conclude an experiment: promote a variant",
    auth=Auth.SERVER,
    body=Conclusion,
    replies=[
        Reply(200, "The experiment, concluded, with the template version its winner became.", ExperimentView)
    ],
    errors=(404, 409),
    description="The variant's parts are saved as the template's next version, for everyone. Without a "
    "`variant`, the one significantly better than the control is promoted, or 409 if there is none yet.",
)
async def conclude_experiment(request: Request) -> JSONResponse:
    settings = server_settings(request)
    raw = await request.body()
    given = (
        parse(Conclusion, await read_json_object(request, settings.max_payload_bytes))
        if raw
        else Conclusion()
    )

    def write() -> dict[str, Any]:
        with system_scope(settings.database_url) as session:
            row = experiments.conclude(session, settings, request.path_params["experiment_id"], given.variant)
            return view(row)

    return JSONResponse(await run_in_threadpool(write))


routes = [
    Route("/api/experiments", list_experiments, methods=["GET"]),
    Route("/api/experiments", create_experiment, methods=["POST"]),
    Route("/api/experiments/{experiment_id:str}", get_experiment, methods=["GET"]),
    Route("/api/experiments/{experiment_id:str}/stop", stop_experiment, methods=["POST"]),
    Route("/api/experiments/{experiment_id:str}/conclude", conclude_experiment, methods=["POST"]),
]
