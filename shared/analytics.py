"""What the engagement analytics count, and how a latency is kept so that percentiles can be
read back from rollups.

A message is counted by its **cohort**: the UTC hour and day it was made to go (its send
time when scheduled, else its creation), with its dimensions (channel, template, rule, event
type, experiment, variant, provider). So a rate in a bucket compares the same messages: of
the emails sent on Monday, how many were opened, whenever the opens came.

Each measure counts a message at most once, whatever order its events arrive in and however
often: the folder keeps the measures already counted per message as bits
(``analytics_counted``). Two latencies are kept as histograms on a logarithmic scale of
milliseconds (each bucket 2^¼ ≈ 19% wider than the one before, so a percentile read back is
within about 10% of the true value):

- **time to deliver**: from the message's start to the first ``sent`` or ``delivered`` (its
  provider took it, or, for webhooks and in-app, it arrived);
- **time to read**: from its start to the first time a person opened, clicked or read it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from shared.db.models import COUNTERS

#: One bit per counter, and one for "time to read observed".
BITS = {name: 1 << i for i, name in enumerate(COUNTERS)}
ENGAGED = 1 << len(COUNTERS)

#: The counters an event of a measure counts. ``delivered`` implies ``sent`` (in-app and
#: webhook messages go straight to it); a scanner's open or click counts apart
#: (``opened.bot``); ``accepted`` and ``undelivered`` count nothing (the latter's ``failed``
#: status does).
COUNTS: dict[str, tuple[str, ...]] = {
    "sent": ("sent",),
    "delivered": ("sent", "delivered"),
    "failed": ("failed",),
    "bounced": ("bounced",),
    "complained": ("complained",),
    "unsubscribed": ("unsubscribed",),
    "seen": ("seen",),
    "read": ("read",),
    "opened": ("opened",),
    "clicked": ("clicked",),
    "opened.bot": ("bot_opened",),
    "clicked.bot": ("bot_clicked",),
}
#: A person engaging with the message: the first of these gives its time to read.
ENGAGING = frozenset({"read", "opened", "clicked"})

K = TypeVar("K", str, int)

#: Each histogram bucket is this much wider than the one before.
RATIO = 2**0.25
_LOG_RATIO = math.log(RATIO)


def latency_bucket(milliseconds: float) -> int:
    """The histogram bucket of a latency: bucket ``i`` holds ``[RATIO**i, RATIO**(i+1))`` ms;
    anything under a millisecond (or a clock that ran backwards) is bucket 0."""
    if milliseconds < 1:
        return 0
    return int(math.log(milliseconds) / _LOG_RATIO)


#: Bucket keys as stored (text) to their index, without parsing each time.
_INDEX: dict[object, int] = {**{str(i): i for i in range(512)}, **{i: i for i in range(512)}}


def percentiles(histogram: Mapping[str, int] | Mapping[int, int], qs: Sequence[float]) -> list[float | None]:
    """The ``qs``-quantiles (each 0 to 1, ascending) of a histogram, in milliseconds,
    interpolated geometrically inside their bucket; None for an empty one. One pass for all."""
    buckets = sorted((_INDEX.get(k) or int(k), n) for k, n in histogram.items() if n > 0)
    total = sum(n for _, n in buckets)
    if total == 0:
        return [None for _ in qs]
    found: list[float | None] = []
    pending = iter(qs)
    q = next(pending, None)
    seen = 0
    for index, count in buckets:
        while q is not None and seen + count >= q * total:
            found.append(float(RATIO ** (index + (q * total - seen) / count)))
            q = next(pending, None)
        seen += count
    found += [float(RATIO ** (buckets[-1][0] + 1)) for _ in range(len(qs) - len(found))]
    return found


def percentile(histogram: Mapping[str, int] | Mapping[int, int], q: float) -> float | None:
    """The ``q``-quantile (0 to 1) of a histogram, in milliseconds."""
    return percentiles(histogram, (q,))[0]


def merge(into: dict[K, int], other: Mapping[K, int]) -> dict[K, int]:
    for key, count in other.items():
        into[key] = into.get(key, 0) + int(count)
    return into


Key = tuple[datetime, tuple[str, ...]]


@dataclass
class Tally:
    """What a batch of events adds to one rollup row."""

    counts: dict[str, int] = field(default_factory=dict)
    time_to_deliver: dict[str, int] = field(default_factory=dict)
    time_to_read: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Message:
    """What the analytics need of a message: its start and its dimensions."""

    start: datetime
    dimensions: tuple[str, ...]

    @classmethod
    def of(cls, row: Any) -> Message:
        """From a ``notification_logs`` row (or a result row with its columns)."""
        values = (
            row.channel,
            row.template_key,
            row.rule_id,
            row.event_type,
            row.experiment_id,
            row.variant,
            row.provider,
        )
        return cls(row.send_at or row.created_at, tuple(v or "" for v in values))


def hour_of(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def day_of(at: datetime) -> datetime:
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class Fold:
    """Events of one batch folded into rollup increments, each measure once per message."""

    hourly: dict[Key, Tally] = field(default_factory=dict)
    daily: dict[Key, Tally] = field(default_factory=dict)
    #: The bits of each message touched, as they are after this batch.
    counted: dict[str, int] = field(default_factory=dict)

    def add(self, message_id: str, message: Message, measure: str, at: datetime, counted: int) -> None:
        bits = self.counted.get(message_id, counted)
        new = [name for name in COUNTS.get(measure, ()) if not bits & BITS[name]]
        engaged = measure in ENGAGING and not bits & ENGAGED
        if not new and not engaged:
            self.counted[message_id] = bits
            return
        since = max((at - message.start) / timedelta(milliseconds=1), 0.0)
        for rollup, bucket in ((self.hourly, hour_of(message.start)), (self.daily, day_of(message.start))):
            tally = rollup.setdefault((bucket, message.dimensions), Tally())
            for name in new:
                tally.counts[name] = tally.counts.get(name, 0) + 1
            if "sent" in new:
                merge(tally.time_to_deliver, {str(latency_bucket(since)): 1})
            if engaged:
                merge(tally.time_to_read, {str(latency_bucket(since)): 1})
        for name in new:
            bits |= BITS[name]
        self.counted[message_id] = bits | (ENGAGED if engaged else 0)
