"""Opens and clicks: what an email's tracking pixel and click redirects report
(:mod:`shared.engagement`), kept as the message's ``opened`` / ``clicked`` receipts.

Mail security scanners and link prefetchers fetch every image and follow every link of a
message, often the moment it arrives, and an open rate counting them means nothing. Each
hit is judged first (:func:`judge`): a ``HEAD`` request, no ``User-Agent`` or a scanner's or
a script's, or a hit within ``TRACKING_BOT_WINDOW`` of the email being sent is a bot's, kept
with the code ``bot`` and the reason as its detail, and proving nothing; a person's has the
code ``human`` and moves a ``sent`` email to ``delivered`` (it arrived: someone opened it).

Each is kept once: the first human open, the first bot open, and the first of each per link
for clicks (``detail`` names the link); later hits change nothing, which is what a unique
open or click rate counts.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from producer import receipts
from shared.channels import Channel
from shared.config import Settings
from shared.db.models import NotificationLog
from shared.engagement import Mark

#: User agents of mail security gateways, link checkers and scripts (lowercase fragments).
SCANNER_AGENTS = re.compile(
    r"bot|crawl|spider|scan|preview|barracuda|mimecast|proofpoint|messagelabs|symantec|forcepoint"
    r"|ironport|fortinet|sophos|trendmicro|zscaler|safelinks|curl|wget|python|go-http-client|java/"
    r"|okhttp|httpclient|libwww|headless"
)


@dataclass(frozen=True)
class Hit:
    """One request for a pixel or a redirect, as the gateway saw it."""

    mark: Mark
    method: str
    user_agent: str
    at: datetime


def judge(hit: Hit, sent_at: datetime | None, window: timedelta) -> str | None:
    """Why ``hit`` is a bot's, or None for a person's."""
    if hit.method == "HEAD":
        return "a HEAD request"
    agent = hit.user_agent.strip().lower()
    if not agent:
        return "no User-Agent"
    if SCANNER_AGENTS.search(agent):
        return "a scanner's User-Agent"
    if sent_at is not None and hit.at - sent_at < window:
        return f"within {window.total_seconds():g} s of sending"
    return None


def _receipt(hit: Hit, sent_at: datetime | None, window: timedelta) -> receipts.Receipt:
    bot = judge(hit, sent_at, window)
    who = "bot" if bot else "human"
    link = hashlib.sha256((hit.mark.url or "").encode()).hexdigest()[:16]
    return receipts.Receipt(
        message_id=hit.mark.message_id,
        type="opened" if hit.mark.kind == "open" else "clicked",
        provider="tracking",
        code=who,
        dedupe_key=f"{hit.mark.kind}:{hit.mark.message_id}:{who}" + (f":{link}" if hit.mark.url else ""),
        detail=" · ".join(part for part in (hit.mark.url, bot) if part) or None,
        occurred_at=hit.at,
    )


def record(session: Session, settings: Settings, hit: Hit) -> list[str]:
    """Keep ``hit`` as a receipt of its email (once per kind, link and human or bot); the ids
    of the webhook messages that forward it. Nothing for a message that is not an email."""
    return record_many(session, settings, [hit])[0]


def record_many(session: Session, settings: Settings, hits: Sequence[Hit]) -> list[list[str]]:
    """:func:`record` for many hits in the transaction under way: the emails read in one
    query, the receipts kept in one insert. Per hit, the forwarding messages' ids."""
    t = NotificationLog
    ids = list({hit.mark.message_id for hit in hits})
    found = {
        row.id: row
        for row in session.execute(select(t.id, t.user_id, t.channel, t.sent_at).where(t.id.in_(ids)))
        if row.channel == Channel.EMAIL.value
    }
    window = timedelta(milliseconds=settings.tracking_bot_window_ms)
    kept = [
        (n, _receipt(hit, message.sent_at, window), receipts.Of(message.user_id, message.channel))
        for n, hit in enumerate(hits)
        if (message := found.get(hit.mark.message_id)) is not None
    ]
    forwarded = receipts.record_many(session, settings, [(receipt, of) for _, receipt, of in kept])
    out: list[list[str]] = [[] for _ in hits]
    for (n, _, _), ids_ in zip(kept, forwarded, strict=True):
        out[n] = ids_
    return out
