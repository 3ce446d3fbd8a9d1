"""The analytics query behind ``GET /api/analytics``: counts, rates and latency percentiles
read from the rollups (:mod:`shared.analytics`), never from the messages themselves.

Buckets are UTC. A query whose bounds fall on whole days and whose interval is a day, a week
(Monday to Sunday) or the whole range reads the daily rollup: a 30-day query reads 30 rows
per combination of dimensions, whatever the number of messages. Any other query reads the
hourly one. Bounds are widened to the rollup's buckets: ``from`` down, ``to`` up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, select

from shared import analytics
from shared.db.models import COUNTERS, AnalyticsDaily, AnalyticsHourly, utcnow
from shared.errors import ValidationError

#: API name → rollup column.
GROUPS = {
    "channel": "channel",
    "template": "template",
    "rule": "rule",
    "eventType": "event_type",
    "experiment": "experiment",
    "variant": "variant",
    "provider": "provider",
}
INTERVALS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}
#: Most buckets one series may have, and the default range when ``from`` is left out.
MAX_BUCKETS = 1000
DEFAULT_RANGE = timedelta(days=7)
MAX_RANGE = timedelta(days=3 * 366)

#: Rate → (numerator, denominators): a rate is over messages sent unless it says otherwise.
RATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "deliveryRate": ("delivered", ("sent",)),
    "failureRate": ("failed", ("sent", "failed")),
    "bounceRate": ("bounced", ("sent",)),
    "openRate": ("opened", ("sent",)),
    "clickRate": ("clicked", ("sent",)),
    "clickToOpenRate": ("clicked", ("opened",)),
    "readRate": ("read", ("sent",)),
    "unsubscribeRate": ("unsubscribed", ("sent",)),
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _invalid(field_: str, message: str) -> ValidationError:
    return ValidationError(message, [{"field": field_, "message": message}])


def _moment(raw: str, field_: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid(field_, "an RFC 3339 date-time (2026-12-01T00:00:00Z) or date (2026-12-01)") from None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


@dataclass(frozen=True)
class Query:
    start: datetime
    end: datetime
    interval: str | None = None
    group_by: tuple[str, ...] = ()
    #: Rollup column → value the rows must have.
    filters: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, params: Mapping[str, str], now: datetime | None = None) -> Query:
        now = now or utcnow()
        end = _moment(params["to"], "to") if params.get("to") else now
        start = _moment(params["from"], "from") if params.get("from") else end - DEFAULT_RANGE
        if start >= end:
            raise _invalid("from", "must be before 'to'")
        if end - start > MAX_RANGE:
            raise _invalid("from", f"a query covers at most {MAX_RANGE.days} days")
        interval = params.get("interval") or None
        if interval is not None and interval not in INTERVALS:
            raise _invalid("interval", f"choose from {', '.join(INTERVALS)}")
        group_by: list[str] = []
        for name in filter(None, (part.strip() for part in params.get("groupBy", "").split(","))):
            if name not in GROUPS:
                raise _invalid("groupBy", f"unknown dimension {name!r}: choose from {', '.join(GROUPS)}")
            if name not in group_by:
                group_by.append(name)
        filters = {GROUPS[name]: params[name] for name in GROUPS if params.get(name)}
        query = cls(start, end, interval, tuple(group_by), filters)
        if interval is not None and len(query.buckets()) > MAX_BUCKETS:
            raise _invalid("interval", f"the range holds more than {MAX_BUCKETS} buckets of an {interval}")
        return query

    @property
    def daily(self) -> bool:
        whole_days = all(t == analytics.day_of(t) for t in (self.start, self.end))
        return whole_days and self.interval != "hour"

    def span(self) -> tuple[datetime, datetime]:
        """The bounds widened to the rollup's buckets."""
        floor = analytics.day_of if self.daily else analytics.hour_of
        step = timedelta(days=1) if self.daily else timedelta(hours=1)
        end = floor(self.end)
        return floor(self.start), end if end == self.end else end + step

    def bucket_of(self, at: datetime) -> datetime:
        if self.interval == "week":
            day = analytics.day_of(at)
            return day - timedelta(days=day.weekday())
        if self.interval == "day":
            return analytics.day_of(at)
        return analytics.hour_of(at)

    def buckets(self) -> list[datetime]:
        assert self.interval is not None
        start, end = self.span()
        out, at = [], self.bucket_of(start)
        while at < end:
            out.append(at)
            at += INTERVALS[self.interval]
        return out


#: Rollup counter → its name in answers (``bot_opened`` → ``botOpened``).
COUNTER_NAMES = {name: _camel(name) for name in COUNTERS}
_HISTOGRAMS = ("time_to_deliver", "time_to_read")


@dataclass
class _Sum:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    #: Per histogram: bucket index (as text, as stored) → count.
    histograms: dict[str, dict[str, int]] = field(default_factory=lambda: {h: {} for h in _HISTOGRAMS})

    def add(self, other: _Sum) -> None:
        for name, count in other.counts.items():
            self.counts[name] += count
        for name, histogram in other.histograms.items():
            analytics.merge(self.histograms[name], histogram)

    def view(self) -> dict[str, Any]:
        counts = self.counts

        def rate(numerator: str, denominators: Sequence[str]) -> float | None:
            total = sum(counts[d] for d in denominators)
            return round(counts[numerator] / total, 4) if total else None

        def latency(histogram: dict[str, int]) -> dict[str, int | None]:
            p50, p95 = analytics.percentiles(histogram, (0.5, 0.95))
            return {
                "p50Ms": None if p50 is None else round(p50),
                "p95Ms": None if p95 is None else round(p95),
            }

        return {
            **{shown: counts[name] for name, shown in COUNTER_NAMES.items()},
            "rates": {name: rate(n, d) for name, (n, d) in RATES.items()},
            "timeToDeliver": latency(self.histograms["time_to_deliver"]),
            "timeToRead": latency(self.histograms["time_to_read"]),
        }


def _sums(connection: Connection, table: Table, query: Query) -> dict[tuple[Any, ...], _Sum]:
    """Per group and rollup bucket (with an interval; per group without): the rollup rows
    added up. A 30-day query by template reads about one row per day and combination of the
    other dimensions; adding them here costs less than expanding every histogram in SQL."""
    start, end = query.span()
    where = [table.c.bucket >= start, table.c.bucket < end]
    where += [table.c[column] == value for column, value in query.filters.items()]
    keyed = [table.c[GROUPS[name]] for name in query.group_by]
    if query.interval is not None:
        keyed.append(table.c.bucket)
    width = len(keyed)
    columns = [*keyed, *(table.c[name] for name in COUNTERS), *(table.c[name] for name in _HISTOGRAMS)]
    sums: dict[tuple[Any, ...], _Sum] = {}
    for row in connection.execute(select(*columns).where(*where)).all():
        key = tuple(row[:width])
        counts = dict(zip(COUNTERS, row[width : width + len(COUNTERS)], strict=True))
        histograms = dict(
            zip(_HISTOGRAMS, (_histogram(h) for h in row[width + len(COUNTERS) :]), strict=True)
        )
        found = sums.get(key)
        if found is None:
            sums[key] = _Sum(counts, histograms)
        else:
            found.add(_Sum(counts, histograms))
    return sums


def _histogram(value: Any) -> dict[str, int]:
    # PostgreSQL's driver hands each row a fresh dict: it can be added to as it is.
    return value if isinstance(value, dict) else dict(json.loads(value or "{}"))


def run(connection: Connection, query: Query) -> dict[str, Any]:
    table: Table = (AnalyticsDaily if query.daily else AnalyticsHourly).__table__  # type: ignore[assignment]
    width = len(query.group_by)
    totals: dict[tuple[str, ...], _Sum] = {}
    series: dict[tuple[str, ...], dict[datetime, _Sum]] = {}
    for key, found in _sums(connection, table, query).items():
        group = tuple(key[:width])
        total = totals.get(group)
        if total is None:
            totals[group] = total = _Sum()
        total.add(found)
        if query.interval is not None:
            points = series.setdefault(group, {})
            at = query.bucket_of(key[width])
            point = points.get(at)
            if point is None:
                points[at] = found  # a day (or hour) of its own: nothing to add it to
            else:
                point.add(found)
    buckets = query.buckets() if query.interval is not None else []
    empty = _Sum().view()
    groups = []
    for group in sorted(totals):
        shown: dict[str, Any] = {
            "key": dict(zip(query.group_by, group, strict=True)),
            "totals": totals[group].view(),
        }
        if query.interval is not None:
            points = series.get(group, {})
            shown["series"] = [
                {"start": at.isoformat(), **(points[at].view() if at in points else empty)} for at in buckets
            ]
        groups.append(shown)
    start, end = query.span()
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "interval": query.interval,
        "groupBy": list(query.group_by),
        "source": "daily" if query.daily else "hourly",
        "groups": groups,
    }
