"""Experiments on a template: variants of its content, who gets which, how each fares, and
promoting the winner (A/B and multivariate).

An experiment covers one template's ``(key, channel, locale)``. Its control renders the
template as it is; every other variant replaces some parts (a subject, a body, an SMS text,
an in-app title …). While it runs, each new message of that template is given a variant at
enqueue time, chosen from its recipient (:func:`shared.experiments.assign`: the same user
always gets the same variant), recorded on the message (``experiment_id``, ``variant``) and
in its template reference, and rendered with that variant's parts at send time.

Results come from the analytics rollups (:mod:`shared.analytics`): per variant the counts of
messages sent and of the experiment's metric, compared with the control by a two-proportion
z-test (:mod:`shared.experiment_stats`). Concluding saves the winner's parts as the
template's next version, so everyone gets it; stopping ends the assignment and keeps the
results. With ``autoPromote`` the analytics folder concludes an experiment itself once a
variant is significantly better than the control.

Which experiments run is read at most every RUNNING_REFRESH_SECONDS per process, so a new or
ended experiment is followed by every producer within that time.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import experiment_stats, experiments
from shared.config import Settings
from shared.db import keyset
from shared.db.models import COUNTERS, AnalyticsDaily, Experiment, utcnow
from shared.db.rls import system_scope
from shared.errors import ExperimentConflict, NotFound, TemplateError, ValidationError
from shared.logging import get_logger
from shared.payloads import TemplateRef
from shared.templates import engine, store
from shared.templates.engine import Compiled

log = get_logger(__name__)

RUNNING_REFRESH_SECONDS = 5.0
#: What an experiment may count as success; the default suits the channel.
METRICS = ("opened", "clicked", "read", "delivered")
DEFAULT_METRIC = {
    "email": "opened",
    "in_app": "read",
    "sms": "delivered",
    "webhook": "delivered",
    "push": "delivered",
    "chat": "delivered",
}


class VariantInput(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    name: str
    weight: float = Field(gt=0, le=1_000_000)
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    sms: str | None = None
    title: str | None = None
    message: str | None = None
    action_url: str | None = None
    payload: dict[str, Any] | list[Any] | None = None

    def parts(self) -> dict[str, Any]:
        named = self.model_dump(by_alias=True, exclude={"name", "weight"}, exclude_none=True)
        return {key: value for key, value in named.items() if value is not None}


class ExperimentInput(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    template: str = Field(pattern=store.KEY_PATTERN)
    channel: str
    locale: str | None = Field(default=None, pattern=store.LOCALE_PATTERN, max_length=store.LOCALE_MAX_CHARS)
    metric: str | None = None
    #: The variant that renders the template unchanged; the first one when not named.
    control: str | None = None
    variants: list[VariantInput] = Field(
        min_length=experiments.MIN_VARIANTS, max_length=experiments.MAX_VARIANTS
    )
    confidence: float = Field(default=0.95, ge=0.8, le=0.999)
    min_sample: int = Field(default=experiment_stats.DEFAULT_MIN_SAMPLE, ge=10, le=10_000_000)
    auto_promote: bool = False


def _invalid(field: str, message: str) -> ValidationError:
    return ValidationError(message, [{"field": field, "message": message}])


def _with_parts(base: dict[str, Any], parts: dict[str, Any]) -> store.TemplateInput:
    return store.TemplateInput.model_validate({**base, **parts})


def create(session: Session, settings: Settings, given: ExperimentInput) -> Experiment:
    """Start an experiment; every variant is checked as a template would be when saved."""
    channel = store.normalize_channel(given.channel)
    if channel == engine.PARTIAL:
        raise _invalid("channel", "a partial is not sent: experiment on a template that uses it")
    locale, version = store.resolve(
        session, given.template, channel, given.locale, settings.template_default_locale
    )
    try:
        experiments.validate_variants([experiments.Variant(v.name, v.weight) for v in given.variants])
    except ValueError as exc:
        raise _invalid("variants", str(exc)) from None
    control = given.control or given.variants[0].name
    by_name = {v.name: v for v in given.variants}
    if control not in by_name:
        raise _invalid("control", f"no variant is named {control!r}")
    if by_name[control].parts():
        raise _invalid("control", "the control renders the template as it is: give it no parts")
    metric = given.metric or DEFAULT_METRIC[channel]
    if metric not in METRICS:
        raise _invalid("metric", f"choose from {', '.join(METRICS)}")
    base = store.document(store.version(session, given.template, channel, locale, version))
    for index, variant in enumerate(given.variants):
        if variant.name == control:
            continue
        if not variant.parts():
            raise _invalid(f"variants[{index}]", f"variant {variant.name!r} changes no part of the template")
        try:
            store.check(session, _with_parts(base, variant.parts()), channel, locale)
        except TemplateError as exc:
            raise TemplateError(f"variant {variant.name!r}: {exc.message}", exc.details) from None
    row = Experiment(
        id=str(uuid.uuid4()),
        name=given.name,
        template_key=given.template,
        channel=channel,
        locale=locale,
        template_version=version,
        status="running",
        metric=metric,
        control=control,
        variants=[{"name": v.name, "weight": v.weight, "parts": v.parts()} for v in given.variants],
        confidence=given.confidence,
        min_sample=given.min_sample,
        auto_promote=given.auto_promote,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise ExperimentConflict(
            f"the {channel} template {given.template!r} ({locale}) already has a running experiment"
        ) from None
    forget_running()
    return row


def get(session: Session, experiment_id: str) -> Experiment:
    row = session.get(Experiment, experiment_id)
    if row is None:
        raise NotFound(f"no experiment {experiment_id!r}")
    return row


#: Experiments are listed oldest first, by ``(created_at, id)``.
LISTED = keyset.Keyset((Experiment.created_at, Experiment.id))


def list_page(
    session: Session, after: keyset.Position | None, limit: int, template: str | None = None
) -> tuple[list[Experiment], keyset.Position | None]:
    query = select(Experiment)
    if template is not None:
        query = query.where(Experiment.template_key == template)
    return keyset.page(session, query, LISTED, after, limit)


def stop(session: Session, experiment_id: str) -> Experiment:
    """End the assignment; the results stay."""
    row = _running(session, experiment_id)
    row.status, row.ended_at = "stopped", utcnow()
    forget_running()
    return row


def _running(session: Session, experiment_id: str) -> Experiment:
    row = session.get(Experiment, experiment_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no experiment {experiment_id!r}")
    if row.status != "running":
        raise ExperimentConflict(f"experiment {experiment_id!r} is {row.status}, not running")
    return row


def conclude(
    session: Session, settings: Settings, experiment_id: str, variant: str | None = None
) -> Experiment:
    """Promote ``variant`` (else the significant winner) to be the template's content."""
    row = _running(session, experiment_id)
    names = [v["name"] for v in row.variants]
    if variant is None:
        variant = experiment_stats.best(results(session, row).comparisons)
        if variant is None:
            raise ExperimentConflict(
                "no variant is significantly better than the control yet: name one to promote"
            )
    if variant not in names:
        raise _invalid("variant", f"experiment has no variant {variant!r}")
    promoted = row.template_version
    if variant != row.control:
        current_locale, current = store.resolve(
            session, row.template_key, row.channel, row.locale, settings.template_default_locale
        )
        base = store.document(store.version(session, row.template_key, row.channel, current_locale, current))
        parts = next(v["parts"] for v in row.variants if v["name"] == variant)
        saved = store.save(session, _with_parts(base, parts), default_locale=settings.template_default_locale)
        promoted = saved.version
    row.status, row.winner, row.promoted_version, row.ended_at = "concluded", variant, promoted, utcnow()
    forget_running()
    log.info("experiment.concluded", experiment_id=row.id, winner=variant, version=promoted)
    return row


@dataclass(frozen=True)
class Results:
    #: Per variant: every counter of the rollups.
    funnels: dict[str, dict[str, int]]
    #: Per variant: messages sent with it, and those that reached the metric.
    arms: dict[str, experiment_stats.Arm]
    comparisons: list[experiment_stats.Comparison]


def results(session: Session, row: Experiment) -> Results:
    """Each variant's funnel, and each non-control variant against the control."""
    t = AnalyticsDaily
    sums = [func.coalesce(func.sum(getattr(t, name)), 0).label(name) for name in COUNTERS]
    found = session.execute(select(t.variant, *sums).where(t.experiment == row.id).group_by(t.variant))
    funnels = {v["name"]: dict.fromkeys(COUNTERS, 0) for v in row.variants}
    for line in found:
        if line.variant in funnels:
            funnels[line.variant] = {name: int(line._mapping[name]) for name in COUNTERS}

    def arm(name: str) -> experiment_stats.Arm:
        funnel = funnels[name]
        # A message's metric may be heard of before its sending is (events fold in any order).
        trials = max(funnel["sent"], funnel[row.metric])
        return experiment_stats.Arm(name, trials, funnel[row.metric])

    arms = {v["name"]: arm(v["name"]) for v in row.variants}
    others = [arms[name] for name in arms if name != row.control]
    comparisons = experiment_stats.compare(
        arms[row.control], others, confidence=row.confidence, min_sample=row.min_sample
    )
    return Results(funnels, arms, comparisons)


def promote_significant(settings: Settings) -> list[str]:
    """Conclude every running self-promoting experiment that has a significant winner; the
    ids of those concluded."""
    concluded = []
    with system_scope(settings.database_url) as session:
        candidates = session.scalars(
            select(Experiment.id).where(Experiment.status == "running", Experiment.auto_promote.is_(True))
        ).all()
    for experiment_id in candidates:
        with system_scope(settings.database_url) as session:
            row = session.get(Experiment, experiment_id, with_for_update=True)
            if row is None or row.status != "running":
                continue
            winner = experiment_stats.best(results(session, row).comparisons)
            if winner is not None:
                conclude(session, settings, experiment_id, winner)
                concluded.append(experiment_id)
    return concluded


# -- assignment at enqueue time, rendering at send time ----------------------------------

_running_cache: tuple[float, dict[tuple[str, str, str], Experiment]] | None = None
_lock = threading.Lock()


def forget_running() -> None:
    global _running_cache
    with _lock:
        _running_cache = None


def _running_now(session: Session) -> dict[tuple[str, str, str], Experiment]:
    global _running_cache
    with _lock:
        cached = _running_cache
    if cached is not None and time.monotonic() - cached[0] < RUNNING_REFRESH_SECONDS:
        return cached[1]
    rows = session.scalars(select(Experiment).where(Experiment.status == "running")).all()
    for row in rows:
        session.expunge(row)
    running = {(r.template_key, r.channel, r.locale): r for r in rows}
    with _lock:
        _running_cache = (time.monotonic(), running)
    return running


def enroll(session: Session, ref: TemplateRef, channel: str, subject: str | None) -> TemplateRef:
    """``ref`` with the variant its recipient gets, when its template is under an experiment."""
    if not subject or ref.version <= 0:
        return ref
    row = _running_now(session).get((ref.key, channel, ref.locale))
    if row is None:
        return ref
    arms = [experiments.Variant(v["name"], float(v["weight"])) for v in row.variants]
    chosen = experiments.assign(row.id, subject.strip().lower(), arms)
    return replace(ref, experiment=row.id, variant=chosen.name)


_parts_cache: dict[tuple[str, str], dict[str, Any]] = {}


def _variant_parts(session: Session, experiment_id: str, variant: str) -> dict[str, Any]:
    """A variant's parts (an experiment's variants never change once it started)."""
    hit = _parts_cache.get((experiment_id, variant))
    if hit is not None:
        return hit
    row = session.get(Experiment, experiment_id)
    found: dict[str, Any] = next(
        (v["parts"] for v in (row.variants if row else []) if v["name"] == variant), {}
    )
    if len(_parts_cache) > 1024:
        _parts_cache.clear()
    _parts_cache[(experiment_id, variant)] = found
    return found


def load(session: Session, ref: TemplateRef, channel: str) -> Compiled:
    """The compiled template a message renders: its pinned version, with its variant's parts
    in place of the template's own when it is in an experiment."""
    if not ref.experiment or not ref.variant:
        return store.load(session, ref.key, channel, ref.locale, ref.version)
    parts = _variant_parts(session, ref.experiment, ref.variant)
    if not parts:
        return store.load(session, ref.key, channel, ref.locale, ref.version)
    source = store.source_of(store.version(session, ref.key, channel, ref.locale, ref.version))
    payload = engine.payload_source(json.dumps(parts["payload"])) if "payload" in parts else source.payload
    own = {name: parts.get(name, text) for name, text in source.parts.items()}
    # Its own cache entry: the key names the variant, the version stays the template's.
    return engine.cached(
        replace(source, key=f"{ref.key}#{ref.experiment}/{ref.variant}", parts=own, payload=payload)
    )
