"""The peer: Apprise, the widely used Python notification library, posting the same JSON
webhooks (``json://``) to the same receiver, one after another and from a thread pool. Apprise
sends directly (no queue, no record, no retry), so it is the cost of delivery alone."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from bench.limits import webhook_payload

#: Threads in the pooled run, as many as a worker process runs.
APPRISE_THREADS = 16


@dataclass(frozen=True)
class AppriseResult:
    sequential_rate: float
    pooled_rate: float
    failures: int


def _sender(receiver_url: str) -> object:
    import apprise

    parts = urlsplit(receiver_url)
    notifier = apprise.Apprise()
    if not notifier.add(f"json://{parts.hostname}:{parts.port}/hook"):
        raise RuntimeError("apprise refused the json:// URL")
    return notifier


def _send_until(notifier: object, count: int, deadline: float, body: str) -> tuple[int, int]:
    sent = failed = 0
    while sent + failed < count and time.perf_counter() < deadline:
        if notifier.notify(body=body, title="order.created"):  # type: ignore[attr-defined]
            sent += 1
        else:
            failed += 1
    return sent, failed


def measure_apprise(receiver_url: str, *, count: int, time_limit_s: float) -> AppriseResult:
    body = json.dumps(webhook_payload())
    # Built before the clock starts: Apprise loads its plugins on first use.
    notifiers = [_sender(receiver_url) for _ in range(APPRISE_THREADS)]
    started = time.perf_counter()
    sequential, failed_seq = _send_until(notifiers[0], count, started + time_limit_s, body)
    sequential_rate = sequential / (time.perf_counter() - started)

    started = time.perf_counter()
    deadline = started + time_limit_s
    per_thread = max(1, count // APPRISE_THREADS)
    with ThreadPoolExecutor(APPRISE_THREADS) as pool:
        results = list(
            pool.map(lambda notifier: _send_until(notifier, per_thread, deadline, body), notifiers)
        )
    pooled = sum(sent for sent, _ in results)
    pooled_rate = pooled / (time.perf_counter() - started)
    return AppriseResult(sequential_rate, pooled_rate, failed_seq + sum(f for _, f in results))
