"""Gateway enqueue under wrk: ``POST /api/messages/webhook`` with a 1 KiB payload at 64
connections, against the real gateway (insert + confirmed publish) and against the same
endpoint with the insert and publish left out (``bench.noop_gateway``)."""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import dataclass

from bench.env import BenchEnv
from bench.limits import CONNECTIONS, webhook_payload
from bench.procs import child, free_port, group_signal, kai, kill, wait_http
from bench.wrk import WrkResult, run_wrk

#: uvicorn worker processes for the gateway on this machine: one per core. Each process keeps
#: its event loop on one core and its blocking insert+publish on a thread pool, so a third
#: process only adds context switches.
GATEWAY_WORKERS = 2

#: A short run before each measurement so connections, pools and caches are warm (wrk runs
#: whole seconds, whatever its request cap).
WARMUP_REQUESTS = 50_000
WARMUP_S = 1.0


@dataclass(frozen=True)
class GatewayResult:
    real: WrkResult
    noop: WrkResult


def _body(receiver_url: str) -> str:
    return json.dumps({"url": f"{receiver_url}/hook", "payload": webhook_payload()})


def _send_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/api/messages/webhook"


def _measure(url: str, body: str, api_key: str, duration_s: float) -> WrkResult:
    headers = {"Authorization": f"Bearer {api_key}"}
    run_wrk(
        url, body, connections=CONNECTIONS, duration_s=WARMUP_S, max_requests=WARMUP_REQUESTS, headers=headers
    )
    return run_wrk(
        url,
        body,
        connections=CONNECTIONS,
        duration_s=duration_s,
        max_requests=int(50_000 * duration_s),
        headers=headers,
    )


def measure_gateway(env: BenchEnv, *, receiver_url: str, duration_s: float) -> GatewayResult:
    """Both servers start together; the no-op one is held (SIGSTOP) while the real one is
    measured, and the real one is gone before the no-op one is measured."""
    body = _body(receiver_url)
    real_port, noop_port = free_port(), free_port()
    real_argv = kai(["gateway", "--port", str(real_port), "--workers", str(GATEWAY_WORKERS)])
    noop_argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "bench.noop_gateway:build",
        "--port",
        str(noop_port),
        "--workers",
        str(GATEWAY_WORKERS),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    with child(real_argv, env.child_env()) as real_process, child(noop_argv, env.child_env()) as noop_process:
        wait_http(f"http://127.0.0.1:{real_port}/healthz", real_process)
        wait_http(f"http://127.0.0.1:{noop_port}/healthz", noop_process)
        group_signal(noop_process, signal.SIGSTOP)
        try:
            real = _measure(_send_url(real_port), body, env.api_key, duration_s)
            kill(real_process)
        finally:
            group_signal(noop_process, signal.SIGCONT)
        env.reset()
        noop = _measure(_send_url(noop_port), body, env.api_key, duration_s)
        kill(noop_process)
    return GatewayResult(real, noop)
