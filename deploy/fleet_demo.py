"""Per-channel scaling across hosts, shown on one machine with network namespaces.

    make fleet-demo            (root; needs iproute2, rabbitmq-server, PostgreSQL binaries)

Six "hosts", each a network namespace on a private bridge: a broker host (its own
RabbitMQ node), a database host (its own PostgreSQL cluster), a gateway host, two
webhook-worker hosts and a receiver host that answers every webhook after 100 ms. The demo
enqueues webhooks through the gateway and measures, from the database, how fast they are
delivered:

1. with one worker host,
2. with two worker hosts (the pool scales by adding hosts: threads, not CPU, are the limit
   against a slow receiver),
3. with two worker hosts, cutting the second host's link mid-load: RabbitMQ notices the dead
   connection (heartbeat), puts that host's unacknowledged messages back on the queue, and
   the first host delivers them once their claims lapse. Nothing accepted is lost.

All traffic stays on the bridge between the namespaces this script creates; everything is
torn down at the end. Figures go to stdout and ``bench/results/fleet-demo.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import suppress
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

#: The demo network: a bridge in the root namespace and one address per host.
BRIDGE = "kaidemo0"
SUBNET = "10.77.0"
HOSTS = {"broker": 10, "database": 20, "gateway": 30, "worker1": 41, "worker2": 42, "receiver": 50}

#: Seconds the receiver takes to answer each webhook.
RECEIVER_DELAY = 0.1
#: Threads per worker host: against a 100 ms receiver, a host delivers at most THREADS / 0.1 s.
WORKER_THREADS = 16
#: RabbitMQ heartbeat (s): how fast a silent host is declared dead (about two intervals).
HEARTBEAT = 3
#: How long a worker's claim lasts (ms): the survivor waits this long for the cut host's claims.
LEASE_MS = 8000

API_KEY = "demo-" + secrets.token_hex(12)
WEBHOOK_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def ip(host: str) -> str:
    return f"{SUBNET}.{HOSTS[host]}"


def sh(*args: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, text=True, capture_output=True, **kwargs)


class Network:
    """The bridge, the namespaces and their links."""

    def __init__(self) -> None:
        self.made: list[str] = []

    def up(self) -> None:
        self.down()
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{SUBNET}.1/24", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        for host in HOSTS:
            ns = f"kd-{host}"
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
            sh("ip", "link", "add", f"kd-{host}-h", "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "set", f"kd-{host}-h", "master", BRIDGE, "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip(host)}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def cut(self, host: str) -> None:
        sh("ip", "link", "set", f"kd-{host}-h", "down")

    def down(self) -> None:
        for host in HOSTS:
            # Whatever still runs in a namespace this script made (epmd outlives its node).
            pids = sh("ip", "netns", "pids", f"kd-{host}", check=False).stdout.split()
            for pid in pids:
                with suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", f"kd-{host}", check=False)
            # The root side of a link can outlive its namespace briefly: remove it by name.
            sh("ip", "link", "del", f"kd-{host}-h", check=False)
        sh("ip", "link", "del", BRIDGE, check=False)


class Processes:
    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []
        self.logs = Path(tempfile.mkdtemp(prefix="kai-fleet-demo-logs-"))

    def start(self, host: str, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            ["ip", "netns", "exec", f"kd-{host}", *argv],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.running.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def stop_all(self) -> None:
        for process in reversed(self.running):
            if process.poll() is None:
                self.stop(process)


def wait_for(what: str, check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    raise SystemExit(f"fleet demo: {what} did not come up within {timeout:.0f}s")


def start_broker(procs: Processes) -> Path:
    """A RabbitMQ node of its own on the broker host."""
    data = Path(tempfile.mkdtemp(prefix="kai-demo-rabbitmq-"))
    shutil.chown(data, "rabbitmq", "rabbitmq")
    (data / "rabbitmq-env.conf").write_text(
        f"NODENAME=kaidemo@localhost\nNODE_IP_ADDRESS={ip('broker')}\nNODE_PORT=5672\n"
        f"MNESIA_BASE={data}/mnesia\nLOG_BASE={data}/log\n"
    )
    (data / "rabbitmq.conf").write_text("loopback_users = none\n")
    env = {
        **os.environ,
        "RABBITMQ_CONF_ENV_FILE": str(data / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(data / "rabbitmq"),
    }
    sh("ip", "netns", "exec", "kd-broker", "rabbitmq-server", "-detached", env=env)

    # await_startup fails at once while epmd is not up yet: ask again until the deadline.
    def started() -> bool:
        return rabbitmqctl(data, "await_startup", "--timeout", "10", check=False).returncode == 0

    wait_for("RabbitMQ", started, 90)
    return data


def rabbitmqctl(data: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """rabbitmqctl against the broker host's node."""
    env = {**os.environ, "RABBITMQ_CONF_ENV_FILE": str(data / "rabbitmq-env.conf")}
    command = ["ip", "netns", "exec", "kd-broker", "rabbitmqctl", "-n", "kaidemo@localhost", *args]
    return sh(*command, env=env, check=check)


def stop_broker(data: Path) -> None:
    rabbitmqctl(data, "stop", check=False)


def unacked_by_host(data: Path, host: str) -> int:
    """Messages RabbitMQ has handed to a host and not yet seen acknowledged."""
    out = rabbitmqctl(data, "-q", "list_channels", "name", "messages_unacknowledged").stdout
    total = 0
    for line in out.splitlines():
        # "10.77.0.42:51234 -> 10.77.0.10:5672 (1)\t17"
        name, _, count = line.rpartition("\t")
        if name.startswith(f"{ip(host)}:") and count.strip().isdigit():
            total += int(count)
    return total


def start_database(procs: Processes) -> None:
    """A PostgreSQL cluster of its own on the database host."""
    data = Path(tempfile.mkdtemp(prefix="kai-demo-postgres-"))
    shutil.chown(data, "postgres", "postgres")
    initdb = shutil.which("initdb") or "initdb"
    postgres = shutil.which("postgres") or "postgres"
    sh("su", "postgres", "-c", f"{initdb} -D {data}/db -U postgres --auth=trust -E UTF8")
    with open(data / "db" / "pg_hba.conf", "a") as hba:
        hba.write(f"host all all {SUBNET}.0/24 trust\n")
    procs.start(
        "database",
        "postgres",
        [
            "su",
            "postgres",
            "-c",
            f"{postgres} -D {data}/db -c listen_addresses={ip('database')} -c unix_socket_directories={data} "
            "-c max_connections=300",
        ],
        os.environ.copy(),
    )
    import psycopg

    url = f"postgresql://postgres@{ip('database')}:5432/postgres"
    wait_for("PostgreSQL", lambda: psycopg.connect(url, connect_timeout=1).close() is None, 30)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE kai")


def app_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"postgresql+psycopg://postgres@{ip('database')}:5432/kai",
        "BROKER_URL": f"amqp://guest:guest@{ip('broker')}:5672/%2F?heartbeat={HEARTBEAT}",
        "API_KEYS": API_KEY,
        "USER_TOKEN_SECRET": secrets.token_urlsafe(32),
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        "DELIVERY_LEASE": str(LEASE_MS),
        "WEBHOOK_TIMEOUT": "3000",
        "WEBHOOK_RETRY_DELAY": "500",
        "WEBHOOK_MAX_RETRIES": "10",
        "LOG_LEVEL": "WARNING",
        # One key enqueues the whole load: a send budget far beyond it, still checked.
        "RATE_LIMIT_SEND": "1000000000/min",
    }


# -- the receiver host -------------------------------------------------------------------


def receiver_main(port: int) -> None:
    """A slow webhook receiver: answers after RECEIVER_DELAY, counts every webhook-id."""
    import uvicorn

    seen: Counter[str] = Counter()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":
            body = json.dumps(
                {
                    "received": sum(seen.values()),
                    "unique": len(seen),
                    "duplicates": sum(c - 1 for c in seen.values()),
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await asyncio.sleep(RECEIVER_DELAY)
        headers = dict(scope["headers"])
        seen[headers.get(b"webhook-id", b"").decode()] += 1
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    uvicorn.run(app, host=ip("receiver"), port=port, log_level="warning", backlog=4096)


def receiver_stats() -> dict[str, int]:
    import httpx

    stats: dict[str, int] = httpx.get(f"http://{ip('receiver')}:9000/stats", timeout=5).json()
    return stats


# -- load and measurement ------------------------------------------------------------------


async def enqueue(count: int, batch: str, concurrency: int = 32) -> list[str]:
    import httpx

    ids: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            response = await http.post(
                "/api/messages/webhook",
                json={"url": f"http://{ip('receiver')}:9000/hook", "payload": {"batch": batch, "n": n}},
            )
            response.raise_for_status()
            ids.append(response.json()["id"])

    async with httpx.AsyncClient(
        base_url=f"http://{ip('gateway')}:8000", timeout=30, headers={"Authorization": f"Bearer {API_KEY}"}
    ) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    return ids


def delivered_count(ids: list[str]) -> tuple[int, float | None, float | None]:
    """How many of ``ids`` are delivered, and the first and last delivery times (epoch s)."""
    import psycopg

    url = f"postgresql://postgres@{ip('database')}:5432/kai"
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), extract(epoch FROM min(delivered_at)), extract(epoch FROM max(delivered_at)) "
            "FROM notification_logs WHERE id = ANY(%s) AND status = 'delivered'",
            (ids,),
        ).fetchone()
    assert row is not None
    return (
        int(row[0]),
        (float(row[1]) if row[1] is not None else None),
        (float(row[2]) if row[2] is not None else None),
    )


def wait_delivered(ids: list[str], timeout: float) -> tuple[int, float]:
    deadline = time.monotonic() + timeout
    while True:
        done, first, last = delivered_count(ids)
        if done == len(ids) or time.monotonic() > deadline:
            rate = done / (last - first) if first is not None and last is not None and last > first else 0.0
            return done, rate
        time.sleep(0.25)


def worker_argv(threads: int) -> list[str]:
    return [
        PYTHON,
        "-m",
        "cli",
        "worker",
        "webhook",
        "--processes",
        "1",
        "--threads",
        str(threads),
        "--metrics-port",
        "9191",
    ]


def run(messages: int, threads: int) -> dict[str, Any]:
    net = Network()
    procs = Processes()
    broker: Path | None = None
    results: dict[str, Any] = {"receiver_delay_ms": RECEIVER_DELAY * 1000, "threads_per_host": threads}
    try:
        net.up()
        broker = start_broker(procs)
        start_database(procs)
        env = app_env()
        sh(PYTHON, "-m", "cli", "migrate", env=env, cwd=ROOT)
        procs.start("receiver", "receiver", [PYTHON, str(Path(__file__)), "receiver"], env)
        wait_for("receiver", receiver_stats, 20)
        procs.start(
            "gateway",
            "gateway",
            [PYTHON, "-m", "cli", "gateway", "--host", ip("gateway"), "--port", "8000"],
            env,
        )
        import httpx

        wait_for(
            "gateway",
            lambda: httpx.get(f"http://{ip('gateway')}:8000/readyz", timeout=2).status_code == 200,
            30,
        )

        # Throughput is measured on a backlog (enqueued before the pool starts), so the
        # gateway's own rate does not cap what the worker hosts show.
        ids = asyncio.run(enqueue(messages, "one-host"))
        worker1 = procs.start("worker1", "worker1", worker_argv(threads), env)
        done, rate = wait_delivered(ids, 180)
        results["one_host"] = {"messages": len(ids), "delivered": done, "per_second": round(rate, 1)}
        print(f"one worker host : {done}/{len(ids)} delivered, {rate:.0f}/s", flush=True)
        procs.stop(worker1)

        ids = asyncio.run(enqueue(messages, "two-hosts"))
        worker1 = procs.start("worker1", "worker1", worker_argv(threads), env)
        worker2 = procs.start("worker2", "worker2", worker_argv(threads), env)
        done, rate = wait_delivered(ids, 180)
        results["two_hosts"] = {"messages": len(ids), "delivered": done, "per_second": round(rate, 1)}
        print(f"two worker hosts: {done}/{len(ids)} delivered, {rate:.0f}/s", flush=True)

        procs.stop(worker1)
        procs.stop(worker2)
        before = receiver_stats()
        ids = asyncio.run(enqueue(messages * 2, "cut"))
        worker1 = procs.start("worker1", "worker1", worker_argv(threads), env)
        worker2 = procs.start("worker2", "worker2", worker_argv(threads), env)
        wait_for("a third of the load delivered", lambda: delivered_count(ids)[0] >= len(ids) // 3, 120)
        held = unacked_by_host(broker, "worker2")
        net.cut("worker2")
        cut_at = time.monotonic()
        print(f"cut worker2's link while it held {held} unacknowledged messages", flush=True)
        done, _ = wait_delivered(ids, 180)
        drained = time.monotonic() - cut_at
        after = receiver_stats()
        results["link_cut"] = {
            "accepted": len(ids),
            "delivered": done,
            "lost": len(ids) - done,
            "held_by_cut_host": held,
            "duplicates_at_receiver": after["duplicates"] - before["duplicates"],
            "seconds_to_drain_after_cut": round(drained, 1),
        }
        print(
            f"after the cut   : {done}/{len(ids)} delivered, lost {len(ids) - done}, "
            f"duplicates {results['link_cut']['duplicates_at_receiver']}, drained in {drained:.1f}s",
            flush=True,
        )
        procs.stop(worker2, signal.SIGKILL)
        procs.stop(worker1)
    finally:
        procs.stop_all()
        if broker is not None:
            stop_broker(broker)
        net.down()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role")
    sub.add_parser("receiver")
    demo = sub.add_parser("demo")
    demo.add_argument("--messages", type=int, default=1500)
    demo.add_argument("--threads", type=int, default=WORKER_THREADS, help="threads per worker host")
    args = parser.parse_args()
    if args.role == "receiver":
        receiver_main(9000)
        return
    if os.geteuid() != 0:
        raise SystemExit("the fleet demo creates network namespaces: run it as root")
    results = run(args.messages, args.threads)
    out = ROOT / "bench" / "results" / f"fleet-demo-{args.threads}-threads.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
