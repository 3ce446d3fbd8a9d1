"""Gateway enqueue under wrk: ``POST /api/messages/webhook`` with a 1 KiB payload at 64
connections, against the real gateway (insert + confirmed publish), against the same
endpoint with the insert and publish left out (``bench.noop_gateway``), and against a bare
Starlette endpoint on the same server settings (``bench.bare_starlette``); and the batch
endpoint, ``POST /api/messages/batch`` with 1,000 messages a request."""

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


#: Messages per batch request, and batch requests in flight at once.
BATCH_SIZE = 1000
BATCH_CONNECTIONS = 4


@dataclass(frozen=True)
class GatewayResult:
    real: WrkResult
    noop: WrkResult
    bare: WrkResult
    batch: WrkResult

    @property
    def batch_messages_rate(self) -> float:
        return self.batch.rate * BATCH_SIZE


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


def _uvicorn(factory: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        factory,
        "--port",
        str(port),
        "--workers",
        str(GATEWAY_WORKERS),
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def _batch_body(receiver_url: str) -> str:
    item = {"channel": "webhook", "url": f"{receiver_url}/hook", "payload": webhook_payload()}
    return json.dumps({"messages": [item] * BATCH_SIZE})


def measure_gateway(env: BenchEnv, *, receiver_url: str, duration_s: float) -> GatewayResult:
    """The three servers start together; the ones not being measured are held (SIGSTOP), and
    each is gone before the next one is measured."""
    body = _body(receiver_url)
    real_port, noop_port, bare_port = free_port(), free_port(), free_port()
    real_argv = kai(["gateway", "--port", str(real_port), "--workers", str(GATEWAY_WORKERS)])
    headers = {"Authorization": f"Bearer {env.api_key}"}
    with (
        child(real_argv, env.child_env()) as real_process,
        child(_uvicorn("bench.noop_gateway:build", noop_port), env.child_env()) as noop_process,
        child(_uvicorn("bench.bare_starlette:build", bare_port), env.child_env()) as bare_process,
    ):
        for port, process in (
            (real_port, real_process),
            (noop_port, noop_process),
            (bare_port, bare_process),
        ):
            wait_http(f"http://127.0.0.1:{port}/healthz", process)
        for held in (noop_process, bare_process):
            group_signal(held, signal.SIGSTOP)
        try:
            real = _measure(_send_url(real_port), body, env.api_key, duration_s)
            env.reset()
            batch = run_wrk(
                f"http://127.0.0.1:{real_port}/api/messages/batch",
                _batch_body(receiver_url),
                connections=BATCH_CONNECTIONS,
                duration_s=duration_s,
                max_requests=int(100 * duration_s),
                headers=headers,
            )
            kill(real_process)
        finally:
            group_signal(noop_process, signal.SIGCONT)
        env.reset()
        noop = _measure(_send_url(noop_port), body, env.api_key, duration_s)
        kill(noop_process)
        group_signal(bare_process, signal.SIGCONT)
        bare = _measure(_send_url(bare_port), body, env.api_key, duration_s)
        kill(bare_process)
    return GatewayResult(real, noop, bare, batch)
