"""End to end per channel, through RabbitMQ and real ``kai-messaging worker`` processes to
fast local peers: the most messages per second a pool delivers, enqueue→delivered latency at
half that load, and the memory of its worker processes."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.env import BenchEnv
from bench.fleet import (
    MIB,
    Produced,
    channel_env,
    latencies_ms,
    percentile,
    prepare,
    produce,
    send_fields,
    steady_rate,
)
from bench.pools import Pool, Pools, PoolSpec
from shared.channels import Channel

#: The pool every channel runs with here: one process per core, threads to cover the waits
#: on the database, the broker and the peer.
PROCESSES = 2
THREADS = 16

#: Limits on each phase, so a stuck pool ends the row instead of the run.
PRODUCE_LIMIT_S = 60.0
DRAIN_LIMIT_S = 60.0
#: Latency is measured at this fraction of the pool's maximum throughput.
LATENCY_LOAD = 0.5


@dataclass(frozen=True)
class ChannelResult:
    channel: Channel
    produced: Produced
    delivered: int
    max_rate: float
    paced_rate: float
    p50_ms: float
    p99_ms: float
    rss_rest_mib: float
    rss_peak_mib: float


def drain_rate(env: BenchEnv, channel: Channel, expected: int) -> tuple[float, int]:
    """Wait for ``expected`` messages to finish; (steady completions/s, delivered count)."""
    env.wait_done(channel, expected, DRAIN_LIMIT_S)
    finished = [done for _created, done in env.completions(channel)]
    return steady_rate(finished), len(finished)


def measure_channels(
    env: BenchEnv,
    pools: Pools,
    channels: list[Channel],
    *,
    receiver_url: str,
    smtp_port: int,
    count: int,
    latency_s: float,
    rest_s: float,
) -> dict[Channel, ChannelResult]:
    """Every channel of ``channels`` in turn, their pools started together beforehand."""
    # Nothing an earlier stage left in a queue may reach the pools about to start.
    env.reset()
    specs = [
        PoolSpec.of(
            channel,
            processes=PROCESSES,
            threads=THREADS,
            env=channel_env(channel, receiver_url=receiver_url, smtp_port=smtp_port, threads=THREADS),
        )
        for channel in channels
    ]
    results = {}
    for channel, pool in zip(channels, pools.start(*specs), strict=True):
        results[channel] = measure_channel(
            env, pool, receiver_url=receiver_url, count=count, latency_s=latency_s, rest_s=rest_s
        )
        pools.stop(pool)
    return results


def measure_channel(
    env: BenchEnv, pool: Pool, *, receiver_url: str, count: int, latency_s: float, rest_s: float
) -> ChannelResult:
    """The most a held, ready pool delivers from a full queue, then its latency at half that,
    and its memory idle after the batch (after ``rest_s``) and at its peak."""
    channel = pool.spec.channel
    env.reset()
    prepare(env, channel, receiver_url)
    fields = send_fields(channel, receiver_url)
    produced = produce(env, channel, fields, count=count, time_limit_s=PRODUCE_LIMIT_S)
    with pool.released():
        max_rate, delivered = drain_rate(env, channel, produced.count)
        time.sleep(rest_s)
        rest = max(pool.worker_rss(), default=0)
        peak = pool.peak_rss
        env.reset()
        prepare(env, channel, receiver_url)
        target = max(1.0, max_rate * LATENCY_LOAD)
        paced = produce(
            env,
            channel,
            fields,
            count=max(1, int(target * latency_s)),
            time_limit_s=latency_s,
            rate=target,
        )
        env.wait_done(channel, paced.count, DRAIN_LIMIT_S)
        latencies = latencies_ms(env, channel)
    return ChannelResult(
        channel=channel,
        produced=produced,
        delivered=delivered,
        max_rate=max_rate,
        paced_rate=paced.rate,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        rss_rest_mib=rest / MIB,
        rss_peak_mib=peak / MIB,
    )
