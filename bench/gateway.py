"""Gateway enqueue under wrk: ``POST /api/messages/webhook`` with a 1 KiB payload at 64
connections, against the real gateway (insert + confirmed publish) and against the same
endpoint with the insert and publish left out (``bench.noop_gateway``)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from bench.env import BenchEnv
from bench.limits import CONNECTIONS, webhook_payload
from bench.procs import child, free_port, kai, wait_http
from bench.wrk import WrkResult, run_wrk

#: uvicorn worker processes for the gateway on this machine: one per core. Each process keeps
#: its event loop on one core and its blocking insert+publish on a thread pool, so a third
#: process only adds context switches.
GATEWAY_WORKERS = 2

#: A short run before each measurement so connections, pools and caches are warm.
WARMUP_S = 1.0


@dataclass(frozen=True)
class GatewayResult:
    real: WrkResult
    noop: WrkResult


def _body(receiver_url: str) -> str:
    return json.dumps({"url": f"{receiver_url}/hook", "payload": webhook_payload()})


def _measure(url: str, body: str, api_key: str, duration_s: float) -> WrkResult:
    headers = {"Authorization": f"Bearer {api_key}"}
    run_wrk(url, body, connections=CONNECTIONS, duration_s=WARMUP_S, max_requests=50_000, headers=headers)
    return run_wrk(
        url,
        body,
        connections=CONNECTIONS,
        duration_s=duration_s,
        max_requests=int(50_000 * duration_s),
        headers=headers,
    )


def measure_gateway(env: BenchEnv, *, receiver_url: str, duration_s: float) -> GatewayResult:
    body = _body(receiver_url)
    port = free_port()
    argv = kai(["gateway", "--port", str(port), "--workers", str(GATEWAY_WORKERS)])
    with child(argv, env.child_env()) as process:
        wait_http(f"http://127.0.0.1:{port}/healthz", process)
        real = _measure(f"http://127.0.0.1:{port}/api/messages/webhook", body, env.api_key, duration_s)
    env.reset()
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "bench.noop_gateway:build",
        "--port",
        str(port),
        "--workers",
        str(GATEWAY_WORKERS),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    with child(argv, env.child_env()) as process:
        wait_http(f"http://127.0.0.1:{port}/healthz", process)
        noop = _measure(f"http://127.0.0.1:{port}/api/messages/webhook", body, env.api_key, duration_s)
    return GatewayResult(real, noop)
