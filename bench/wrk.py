"""wrk, the C load generator, driven with a Lua script: POST bodies, a request cap per
connection thread, and a JSON summary we parse."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: wrk's own threads; with two cores, more only fight the server for CPU.
WRK_THREADS = 2

#: A request wrk gives up on counts as a timeout error.
WRK_TIMEOUT_S = 5

_SCRIPT = """
wrk.method = "POST"
wrk.body = %(body)s
wrk.headers["Content-Type"] = "application/json"
%(headers)s
local cap = %(cap)d
local count = 0
function response(status, headers, body)
  count = count + 1
  if count >= cap then wrk.thread:stop() end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\n{"requests": %%d, "duration_us": %%d, "errors": %%d, "non2xx": %%d, "p50_us": %%d, "p99_us": %%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: int
    non2xx: int
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return (self.requests - self.errors - self.non2xx) / self.seconds if self.seconds else 0.0


def lua_string(value: str) -> str:
    return "[==[" + value + "]==]"


def run_wrk(
    url: str,
    body: str,
    *,
    connections: int,
    duration_s: float,
    max_requests: int,
    headers: dict[str, str] | None = None,
) -> WrkResult:
    """POST ``body`` to ``url`` for at most ``duration_s`` and about ``max_requests`` requests."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed; run bench/setup.sh")
    header_lines = "\n".join(
        f"wrk.headers[ {lua_string(k)} ] = {lua_string(v)}" for k, v in (headers or {}).items()
    )
    cap = max(1, max_requests // WRK_THREADS)
    script = _SCRIPT % {"body": lua_string(body), "headers": header_lines, "cap": cap}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "post.lua"
        path.write_text(script)
        completed = subprocess.run(
            [
                "wrk",
                f"-t{WRK_THREADS}",
                f"-c{connections}",
                f"-d{max(1, round(duration_s))}s",
                f"--timeout={WRK_TIMEOUT_S}s",
                "-s",
                str(path),
                url,
            ],
            capture_output=True,
            text=True,
            timeout=duration_s + 30,
            check=True,
        )
    if completed.stderr.strip():
        raise RuntimeError(f"wrk script failed: {completed.stderr.strip()[:500]}")
    lines = [line for line in completed.stdout.splitlines() if line.startswith('{"requests"')]
    if not lines:
        raise RuntimeError(f"wrk printed no summary: {completed.stdout[-500:]}")
    summary = json.loads(lines[-1])
    return WrkResult(
        requests=summary["requests"],
        seconds=summary["duration_us"] / 1e6,
        errors=summary["errors"],
        non2xx=summary["non2xx"],
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
    )
