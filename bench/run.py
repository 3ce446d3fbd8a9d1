"""``make bench``: measure the fleet against this machine's own limits and print one table.

python -m bench.run [--quick] [--only STAGE …] [--output bench/results/latest.json]

Every row is measured in this run, on a throwaway database and virtual host, with every peer
on loopback; the same machine's raw limits (RabbitMQ alone, the HTTP receiver alone) are
measured first so the ratios compare like with like. See bench/README.md for each row.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import (
    analytics,
    digests,
    endtoend,
    events,
    gateway,
    limits,
    peer_apprise,
    retry,
    scaling,
    scheduled,
    stall,
)
from bench.env import BenchEnv, scratch_env
from bench.fleet import PRODUCER_THREADS, SEND_MANY_CHUNK, produce_many, send_fields
from bench.pools import Pools
from bench.procs import http_peer, smtp_peer
from bench.report import Row, render, unavailable, write_json
from shared.channels import Channel
from shared.logging import configure_logging

DEFAULT_OUTPUT = Path(__file__).parent / "results" / "latest.json"


@dataclass(frozen=True)
class Sizes:
    """How much each benchmark sends; every loop is also bounded in time."""

    rabbit_messages: int
    rabbit_seconds: float
    #: wrk runs whole seconds.
    wrk_seconds: float
    e2e_messages: int
    latency_seconds: float
    #: How long a pool idles after its batch before its memory is read "at rest".
    rest_seconds: float
    scaling_messages: int
    #: The process counts of rows 6.x measured on their own (2 processes is row 5a's run).
    scaling_processes: tuple[int, ...]
    slow_messages: int
    retry_messages: int
    apprise_messages: int
    apprise_seconds: float
    #: The parked-retry runs, one per scheduler interval (ms).
    scheduler_intervals: tuple[int, ...]
    send_many_messages: int
    #: Messages scheduled for the same second (row 11).
    scheduled_messages: int = 10_000


FULL = Sizes(10_000, 5.0, 8.0, 3_000, 6.0, 1.0, 2_000, (1, 4), 2_000, 300, 1_000, 5.0, (500, 50), 20_000)
QUICK = Sizes(
    2_000, 1.5, 1.0, 150, 1.0, 0.5, 150, (1,), 200, 30, 150, 1.5, (500,), 2_000, scheduled_messages=1_000
)

#: The longest the send_many row may run.
SEND_MANY_LIMIT_S = 30.0

#: Rows 6.x and 7x, in the table's order; those a quick run leaves out still get a row.
SCALING_PROCESSES = (1, 2, 4)
SCHEDULER_INTERVALS = (500, 50)

#: The stages that run worker pools; before any other, the pools still alive are killed.
POOL_STAGES = {"e2e", "scaling", "stall", "retry", "scheduled"}

#: Targets for this two-core machine (see bench/README.md).
GATEWAY_TARGET_RPS = 2_500
GATEWAY_TARGET_P99_MS = 50.0
GATEWAY_TARGET_OF_NOOP = 0.60
NOOP_TARGET_OF_BARE = 0.50
BATCH_TARGET_MPS = 20_000
E2E_TARGETS = {Channel.WEBHOOK: 1_500, Channel.EMAIL: 800, Channel.SMS: 1_000, Channel.IN_APP: 2_000}
E2E_TARGET_P50_MS = 5.0
E2E_TARGET_P99_MS = 25.0
PRODUCER_TARGET_RPS = 2_000
SEND_MANY_TARGET_MPS = 20_000
EVENTS_TARGET_EPS = 500
RETRY_TARGET_P99_MS = 100.0
SCHEDULED_TARGET_P99_MS = 1000.0
SLOW_TARGET_RPS = 2_000
#: Healthy webhooks' p99 beside stalling receivers, against their p99 alone.
STALL_TARGET_RATIO = 2.0
RSS_TARGET_MIB = 150.0
#: Our webhook fleet against Apprise's pooled sends, in the same run.
APPRISE_TARGET_RATIO = 2.0

UNITS = {
    Channel.WEBHOOK: "webhooks/s",
    Channel.EMAIL: "emails/s",
    Channel.SMS: "SMS/s",
    Channel.IN_APP: "in-app/s",
    Channel.PUSH: "pushes/s",
    Channel.CHAT: "chat messages/s",
}


#: Channels whose provider is an HTTP client: their rows are read against the HTTP ceiling (L2).
HTTP_CHANNELS = (Channel.WEBHOOK, Channel.SMS, Channel.PUSH, Channel.CHAT)


def _at_least(value: float, target: float) -> bool:
    return value >= target


def _at_most(value: float, target: float) -> bool:
    return value <= target


class Bench:
    def __init__(self, env: BenchEnv, pools: Pools, sizes: Sizes, receiver_url: str, smtp_port: int) -> None:
        self.env = env
        self.pools = pools
        self.sizes = sizes
        self.receiver_url = receiver_url
        self.smtp_port = smtp_port
        self.rows: list[Row] = []
        self.l1_concurrent: float | None = None
        self.l2: float | None = None
        self.webhook_rate: float | None = None

    def stage(self, name: str, title: str, measure: Callable[[], None]) -> None:
        started = time.monotonic()
        print(f"bench: {title} …", file=sys.stderr, flush=True)
        try:
            if name not in POOL_STAGES:
                self.pools.close()
            measure()
        except Exception as exc:  # one broken stage must not hide the others' figures
            self.rows.append(unavailable("!", title, f"{type(exc).__name__}: {exc}"))
        print(f"bench: {title} done in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)

    def limits(self) -> None:
        s = self.sizes
        rabbit = limits.measure_rabbitmq(self.env, count=s.rabbit_messages, time_limit_s=s.rabbit_seconds)
        self.l1_concurrent = rabbit.concurrent_publish_rate
        rate, p50, p99 = limits.measure_http_sink(duration_s=s.wrk_seconds)
        self.l2 = rate
        self.rows += [
            Row("L1a", "RabbitMQ publish+confirm, 1 publisher", rabbit.publish_rate, "msg/s"),
            Row(
                "L1b",
                f"RabbitMQ publish+confirm, {limits.CONCURRENT_PUBLISHERS} publishers",
                rabbit.concurrent_publish_rate,
                "msg/s",
            ),
            Row("L1c", "RabbitMQ consume+ack", rabbit.consume_rate, "msg/s"),
            Row(
                "L2",
                "HTTP receiver under wrk, 64 conns",
                rate,
                "req/s",
                note=f"p50 {p50:.1f} ms, p99 {p99:.1f} ms",
            ),
        ]

    def gateway(self) -> None:
        result = gateway.measure_gateway(
            self.env, receiver_url=self.receiver_url, duration_s=self.sizes.wrk_seconds
        )
        real, noop, bare = result.real, result.noop, result.bare
        if not real.requests or not noop.requests:
            reason = "no answers within the run (machine overloaded?)"
            self.rows.append(unavailable("3", "gateway enqueue", reason))
            return
        errors = real.errors + real.non2xx
        self.rows += [
            Row(
                "3a",
                f"gateway enqueue, {gateway.GATEWAY_WORKERS} workers, 64 conns",
                real.rate,
                "req/s",
                "L1b",
                self.l1_concurrent,
                f">= {GATEWAY_TARGET_RPS:,}",
                _at_least(real.rate, GATEWAY_TARGET_RPS),
                note=f"{errors} errors/non-2xx of {real.requests}" if errors else "",
            ),
            Row(
                "3b",
                "gateway enqueue vs its no-op ceiling",
                real.rate,
                "req/s",
                "no-op",
                noop.rate,
                f">= {GATEWAY_TARGET_OF_NOOP:.0%} of no-op",
                _at_least(real.rate, GATEWAY_TARGET_OF_NOOP * noop.rate),
            ),
            Row(
                "L3",
                "bare Starlette endpoint, same server settings",
                bare.rate,
                "req/s",
                note=f"p50 {bare.p50_ms:.1f} ms, p99 {bare.p99_ms:.1f} ms",
            ),
            Row(
                "3e",
                "gateway no-op ceiling vs bare Starlette",
                noop.rate,
                "req/s",
                "L3",
                bare.rate,
                f">= {NOOP_TARGET_OF_BARE:.0%} of L3",
                _at_least(noop.rate, NOOP_TARGET_OF_BARE * bare.rate),
            ),
            Row("3c", "gateway enqueue p50", real.p50_ms, "ms", "no-op p50", noop.p50_ms),
            Row(
                "3d",
                "gateway enqueue p99",
                real.p99_ms,
                "ms",
                "no-op p99",
                noop.p99_ms,
                f"<= {GATEWAY_TARGET_P99_MS:.0f} ms",
                _at_most(real.p99_ms, GATEWAY_TARGET_P99_MS),
            ),
            Row(
                "3f",
                f"batch enqueue, {gateway.BATCH_SIZE} messages a request, {gateway.BATCH_CONNECTIONS} conns",
                result.batch_messages_rate,
                "messages/s",
                "L1b",
                self.l1_concurrent,
                f">= {BATCH_TARGET_MPS:,}",
                _at_least(result.batch_messages_rate, BATCH_TARGET_MPS),
                note=f"p50 {result.batch.p50_ms:.0f} ms per request"
                + (
                    f"; {result.batch.errors + result.batch.non2xx} errors"
                    if result.batch.errors + result.batch.non2xx
                    else ""
                ),
            ),
        ]

    def end_to_end(self) -> None:
        results = endtoend.measure_channels(
            self.env,
            self.pools,
            [Channel.WEBHOOK, Channel.EMAIL, Channel.SMS, Channel.IN_APP, Channel.PUSH, Channel.CHAT],
            receiver_url=self.receiver_url,
            smtp_port=self.smtp_port,
            count=self.sizes.e2e_messages,
            latency_s=self.sizes.latency_seconds,
            rest_s=self.sizes.rest_seconds,
        )
        webhook = results[Channel.WEBHOOK]
        many = produce_many(
            self.env,
            Channel.WEBHOOK,
            send_fields(Channel.WEBHOOK, self.receiver_url),
            count=self.sizes.send_many_messages,
            time_limit_s=SEND_MANY_LIMIT_S,
        )
        self.env.reset()
        self.rows += [
            Row(
                "4",
                f"producer send_webhook, {PRODUCER_THREADS} threads",
                webhook.produced.rate,
                "calls/s",
                "L1b",
                self.l1_concurrent,
                f">= {PRODUCER_TARGET_RPS:,}",
                _at_least(webhook.produced.rate, PRODUCER_TARGET_RPS),
            ),
            Row(
                "4b",
                f"producer send_many, {SEND_MANY_CHUNK} a call, one thread",
                many.rate,
                "messages/s",
                "L1b",
                self.l1_concurrent,
                f">= {SEND_MANY_TARGET_MPS:,}",
                _at_least(many.rate, SEND_MANY_TARGET_MPS),
            ),
        ]
        for n, (channel, r) in enumerate(results.items()):
            key = f"5{'abcdef'[n]}"
            target = E2E_TARGETS.get(channel)
            lost = r.produced.count - r.delivered
            self.rows += [
                Row(
                    key,
                    f"e2e {channel.value}, {endtoend.PROCESSES}x{endtoend.THREADS} workers",
                    r.max_rate,
                    UNITS[channel],
                    "L2" if channel in HTTP_CHANNELS else "L1c",
                    self.l2 if channel in HTTP_CHANNELS else self._l1_consume(),
                    f">= {target:,}" if target else "",
                    _at_least(r.max_rate, target) if target else None,
                    note=f"{lost} of {r.produced.count} not delivered" if lost else "",
                ),
                Row(
                    f"{key}.p50",
                    f"e2e {channel.value} latency p50 at {r.paced_rate:,.0f}/s",
                    r.p50_ms,
                    "ms",
                    target=f"<= {E2E_TARGET_P50_MS:.0f} ms",
                    met=_at_most(r.p50_ms, E2E_TARGET_P50_MS),
                ),
                Row(
                    f"{key}.p99",
                    f"e2e {channel.value} latency p99 at {r.paced_rate:,.0f}/s",
                    r.p99_ms,
                    "ms",
                    target=f"<= {E2E_TARGET_P99_MS:.0f} ms",
                    met=_at_most(r.p99_ms, E2E_TARGET_P99_MS),
                ),
            ]
        rest = max(results.values(), key=lambda r: r.rss_rest_mib)
        peak = max(results.values(), key=lambda r: r.rss_peak_mib)
        per_channel = ", ".join(
            f"{c.value} {r.rss_rest_mib:.0f}/{r.rss_peak_mib:.0f}" for c, r in results.items()
        )
        self.rows += [
            Row(
                "9a",
                f"worker RSS at rest, largest ({rest.channel.value})",
                rest.rss_rest_mib,
                "MiB",
                target=f"<= {RSS_TARGET_MIB:.0f} MiB",
                met=_at_most(rest.rss_rest_mib, RSS_TARGET_MIB),
                note=f"rest/peak MiB per process: {per_channel}",
            ),
            Row("9b", f"worker RSS under load, largest ({peak.channel.value})", peak.rss_peak_mib, "MiB"),
        ]
        self.webhook_rate = webhook.max_rate

    def _l1_consume(self) -> float | None:
        for row in self.rows:
            if row.key == "L1c":
                return row.value
        return None

    def scaling(self) -> None:
        s = self.sizes
        points: dict[int, scaling.ScalingPoint] = {}
        if self.webhook_rate is not None:
            # Row 5a ran exactly this: the 2x16 webhook pool draining a full queue.
            points[2] = scaling.ScalingPoint(2, scaling.THREADS_PER_PROCESS, self.webhook_rate, 0)
        wanted = {*s.scaling_processes, 2} - points.keys()

        def measure(processes: int) -> None:
            points[processes] = scaling.processes_point(
                self.env, self.pools, self.receiver_url, processes=processes, count=s.scaling_messages
            )

        # One process last: its pool serves row 7a too, in the stage that comes next.
        for processes in sorted(wanted - {1}):
            measure(processes)
        slow = scaling.slow_receiver(self.env, self.pools, count=s.slow_messages)
        if 1 in wanted:
            measure(1)
        one = points[1].rate
        for processes in SCALING_PROCESSES:
            what = f"webhook pool {processes}x{scaling.THREADS_PER_PROCESS}, fast receiver"
            point = points.get(processes)
            if point is None:
                self.rows.append(Row(f"6.{processes}", what, None, "webhooks/s", note="full run only"))
                continue
            note = "the run of row 5a" if processes == 2 and self.webhook_rate is not None else ""
            row = Row(f"6.{processes}", what, point.rate, "webhooks/s", "1 process", one, note=note)
            self.rows.append(row)
        ceiling = slow.threads * 1000 / scaling.SLOW_RECEIVER_MS
        self.rows.append(
            Row(
                "6.slow",
                f"webhook pool 1x{slow.threads}, receiver 100 ms",
                slow.rate,
                "webhooks/s",
                "threads/100ms",
                ceiling,
                f">= {SLOW_TARGET_RPS:,}",
                _at_least(slow.rate, SLOW_TARGET_RPS),
                note=f"{slow.max_in_flight} requests in flight at most",
            )
        )

    def stall(self) -> None:
        result = stall.measure(self.env, self.pools, self.receiver_url, seconds=self.sizes.latency_seconds)
        what = f"healthy webhooks at {stall.HEALTHY_RATE:.0f}/s, pool 1x{stall.THREADS}"
        beside = f"beside {stall.STALLING_RECEIVERS} receivers stalling their headers"
        note = (
            f"{result.max_stalled} stalled requests held at once; "
            f"{result.delivered} of {result.sent} delivered"
        )
        self.rows += [
            Row("6.stall.base.p99", f"{what}, latency p99 alone", result.base_p99_ms, "ms"),
            Row("6.stall.p50", f"{what}, latency p50 {beside}", result.p50_ms, "ms"),
            Row(
                "6.stall.p99",
                f"{what}, latency p99 {beside}",
                result.p99_ms,
                "ms",
                "6.stall.base.p99",
                result.base_p99_ms,
                f"<= {STALL_TARGET_RATIO:.0f}x alone",
                _at_most(result.p99_ms, STALL_TARGET_RATIO * max(result.base_p99_ms, 1.0)),
                note=note,
            ),
        ]

    def retries(self) -> None:
        count = self.sizes.retry_messages
        runs = [(False, 500, "7a")] + [(True, i, f"7{'bc'[n]}") for n, i in enumerate(SCHEDULER_INTERVALS)]
        for parked, interval, key in runs:
            label = f"parked, scheduler every {interval} ms" if parked else "broker delay"
            if parked and interval not in self.sizes.scheduler_intervals:
                self.rows += [
                    Row(f"{key}.{p}", f"retry lateness {p}, {label}", None, "ms", note="full run only")
                    for p in ("p50", "p99")
                ]
                continue
            result = retry.measure_retry(
                self.env, self.pools, parked=parked, count=count, scheduler_interval_ms=interval
            )
            if result.retried == 0:
                missing = f"none of {count} retries arrived"
                self.rows += [
                    unavailable(f"{key}.{p}", f"retry lateness {p}, {label}", missing) for p in ("p50", "p99")
                ]
                continue
            self.rows += [
                Row(f"{key}.p50", f"retry lateness p50, {label}", result.p50_late_ms, "ms"),
                Row(
                    f"{key}.p99",
                    f"retry lateness p99, {label}",
                    result.p99_late_ms,
                    "ms",
                    target=f"<= {RETRY_TARGET_P99_MS:.0f} ms",
                    met=_at_most(result.p99_late_ms, RETRY_TARGET_P99_MS),
                    note="" if result.retried == count else f"{result.retried} of {count} retries measured",
                ),
            ]

    def scheduled(self) -> None:
        r = scheduled.measure(self.env, self.pools, count=self.sizes.scheduled_messages)
        burst = f"{r.count:,} in-app due the same second, pool {scheduled.PROCESSES}x{scheduled.THREADS}"
        notes = []
        if r.delivered < r.count:
            notes.append(f"{r.count - r.delivered} of {r.count} not delivered")
        if r.fill_margin_s < 0:
            notes.append(f"the fill ended {-r.fill_margin_s:.1f} s after the due time")
        self.rows += [
            Row("11.p50", f"scheduled, published late p50, {burst}", r.published.p50_ms, "ms"),
            Row(
                "11.p99",
                f"scheduled, published late p99, {burst}",
                r.published.p99_ms,
                "ms",
                target=f"<= {SCHEDULED_TARGET_P99_MS:,.0f} ms",
                met=_at_most(r.published.p99_ms, SCHEDULED_TARGET_P99_MS),
                note="; ".join([f"max {r.published.max_ms:,.0f} ms", *notes]),
            ),
            Row("11.d50", f"scheduled, delivered late p50, {burst}", r.delivered_late.p50_ms, "ms"),
            Row(
                "11.d99",
                f"scheduled, delivered late p99, {burst}",
                r.delivered_late.p99_ms,
                "ms",
                note=f"max {r.delivered_late.max_ms:,.0f} ms; the burst drains at the pool's rate (5d)",
            ),
        ]

    def events(self) -> None:
        self.rows += events.measure(self.env, quick=self.sizes is QUICK)

    def digests(self) -> None:
        self.rows += digests.measure(self.env, quick=self.sizes is QUICK)

    def analytics(self) -> None:
        self.rows += analytics.measure(self.env, quick=self.sizes is QUICK)

    def apprise(self) -> None:
        s = self.sizes
        result = peer_apprise.measure_apprise(
            self.receiver_url, count=s.apprise_messages, time_limit_s=s.apprise_seconds
        )
        self.rows += [
            Row("10a", "Apprise json://, sequential", result.sequential_rate, "webhooks/s", "L2", self.l2),
            Row(
                "10b",
                f"Apprise json://, {peer_apprise.APPRISE_THREADS} threads",
                result.pooled_rate,
                "webhooks/s",
                "L2",
                self.l2,
                note=f"{result.failures} failed" if result.failures else "",
            ),
            Row(
                "10c",
                "our webhook fleet (5a) vs Apprise pooled",
                self.webhook_rate,
                "webhooks/s",
                "10b",
                result.pooled_rate,
                f">= {APPRISE_TARGET_RATIO:.0f}x 10b",
                None
                if self.webhook_rate is None
                else _at_least(self.webhook_rate, APPRISE_TARGET_RATIO * result.pooled_rate),
            ),
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run in about a minute")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[
            "limits",
            "gateway",
            "e2e",
            "scaling",
            "stall",
            "retry",
            "scheduled",
            "events",
            "digests",
            "analytics",
            "apprise",
        ],
        help="run only these stages (rows compared with a limit need 'limits' too)",
    )
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    # Purging queues that were never declared is expected here; pika logs each as a warning.
    logging.getLogger("pika").setLevel(logging.ERROR)
    sizes = QUICK if args.quick else FULL
    started = time.monotonic()
    with scratch_env() as env, http_peer() as receiver_url, smtp_peer() as smtp_port, Pools(env) as pools:
        bench = Bench(env, pools, sizes, receiver_url, smtp_port)
        stages = {
            "limits": ("raw limits (L1, L2)", bench.limits),
            "gateway": ("gateway (3)", bench.gateway),
            "e2e": ("producer and end to end (4, 5, 9)", bench.end_to_end),
            "scaling": ("scaling (6)", bench.scaling),
            "retry": ("retry precision (7)", bench.retries),
            "stall": ("stalling receivers (6.stall)", bench.stall),
            "scheduled": ("scheduled lateness (11)", bench.scheduled),
            "events": ("events (8)", bench.events),
            "digests": ("digest window closing (12)", bench.digests),
            "analytics": ("analytics folding and query (13)", bench.analytics),
            "apprise": ("Apprise (10)", bench.apprise),
        }
        for name, (title, measure) in stages.items():
            if not args.only or name in args.only:
                bench.stage(name, title, measure)
    elapsed = time.monotonic() - started
    print(render(bench.rows))
    print(f"\n{'quick' if args.quick else 'full'} run in {elapsed:.0f} s; written to {args.output}")
    write_json(bench.rows, args.output, quick=args.quick, elapsed_s=elapsed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
