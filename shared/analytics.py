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
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import accumulate
from typing import Any

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

#: Each histogram bucket is this much wider than the one before.
RATIO = 2**0.25
_LOG_RATIO = math.log(RATIO)


def latency_bucket(milliseconds: float) -> int:
    """The histogram bucket of a latency: bucket ``i`` holds ``[RATIO**i, RATIO**(i+1))`` ms;
    anything under a millisecond (or a clock that ran backwards) is bucket 0."""
    if milliseconds < 1:
        return 0
    return int(math.log(milliseconds) / _LOG_RATIO)


#: Buckets a histogram may have: the last, 159, starts at 2^39.75 ms (about 29 years) and
#: counts anything later.
SLOTS = 160


def bump(counts: list[int], index: int, by: int = 1) -> list[int]:
    """Count ``by`` in bucket ``index`` of a histogram: a list of counts per bucket, as long
    as its last non-empty bucket (what the rollups store)."""
    index = min(index, SLOTS - 1)
    if index >= len(counts):
        counts.extend([0] * (index + 1 - len(counts)))
    counts[index] += by
    return counts


def percentiles(counts: Sequence[int], qs: Sequence[float]) -> list[float | None]:
    """The ``qs``-quantiles (each 0 to 1) of a histogram, in milliseconds, interpolated
    geometrically inside their bucket; None for an empty one."""
    cumulative = list(accumulate(counts))
    total = cumulative[-1] if cumulative else 0
    if total == 0:
        return [None for _ in qs]
    found: list[float | None] = []
    for q in qs:
        target = q * total
        # The bucket the target falls in; a target of zero is the first non-empty bucket's start.
        index = bisect_left(cumulative, target if target > 0 else 1)
        before = cumulative[index] - counts[index]
        found.append(float(RATIO ** (index + (target - before) / counts[index])))
    return found


def percentile(counts: Sequence[int], q: float) -> float | None:
    """The ``q``-quantile (0 to 1) of a histogram, in milliseconds."""
    return percentiles(counts, (q,))[0]


Key = tuple[datetime, tuple[str, ...]]


@dataclass
class Tally:
    """What a batch of events adds to one rollup row."""

    counts: dict[str, int] = field(default_factory=dict)
    time_to_deliver: list[int] = field(default_factory=list)
    time_to_read: list[int] = field(default_factory=list)


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
                bump(tally.time_to_deliver, latency_bucket(since))
            if engaged:
                bump(tally.time_to_read, latency_bucket(since))
        for name in new:
            bits |= BITS[name]
        self.counted[message_id] = bits | (ENGAGED if engaged else 0)
