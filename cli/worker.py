"""``kai-messaging worker CHANNEL...``: a Dramatiq worker pool on RabbitMQ for some channel
queues (or the events queue), with its own Prometheus metrics port."""

from __future__ import annotations

import argparse
import os
import sys

from cli import boot_watchdog
from shared.config import get_settings

#: How long Dramatiq's main process waits for a worker process to boot (its default is 30 s;
#: ours boot in one to three).
WORKER_BOOT_TIMEOUT_MS = 10_000


def run_pool(args: argparse.Namespace) -> int:
    """``kai-messaging worker``: a Dramatiq pool consuming the named queues."""
    settings = get_settings()
    if settings.embedded_broker:
        print(
            "kai-messaging: worker needs BROKER_URL (RabbitMQ); on the embedded defaults "
            "'kai-messaging run' runs the workers inside the gateway process",
            file=sys.stderr,
        )
        return 2
    queues: list[str] = list(dict.fromkeys(args.channels))
    _prepare_worker_metrics(queues, args.metrics_port)
    argv = [
        "dramatiq",
        "workers.fleet",
        "--processes",
        str(args.processes),
        "--threads",
        str(args.threads),
        "--worker-fork-timeout",
        str(WORKER_BOOT_TIMEOUT_MS),
        "--queues",
        *queues,
    ]
    from dramatiq.cli import main as dramatiq_main

    # Imported once here, before Dramatiq forks the worker processes: they inherit it instead
    # of each importing it again, most of a worker process's start-up CPU. (It opens nothing.)
    import workers.actors  # noqa: F401

    sys.argv = argv
    # A worker killed during the pool's start-up can leave Dramatiq's main process blocked
    # for good (cli/boot_watchdog.py): past its own wait for booting workers, end the pool.
    boot_watchdog.watch(stuck_after_s=2 * WORKER_BOOT_TIMEOUT_MS / 1000)
    code: int = dramatiq_main()  # type: ignore[no-untyped-call]
    return code


def _prepare_worker_metrics(queues: list[str], port: int) -> None:
    """Before any worker process starts: one multiprocess metrics directory per pool (two pools
    on a host must not share or clear each other's), and the port its exposition server
    listens on (Dramatiq's Prometheus middleware serves the merged view from the main process)."""
    import tempfile

    directory = os.path.join(tempfile.gettempdir(), f"kai-metrics-{'-'.join(queues)}-{port}")
    os.makedirs(directory, exist_ok=True)
    for stale in os.listdir(directory):  # a previous run's processes are gone
        os.unlink(os.path.join(directory, stale))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    # Dramatiq reads these lower-case names.
    os.environ["dramatiq_prom_db"] = directory  # noqa: SIM112
    os.environ["dramatiq_prom_port"] = str(port)  # noqa: SIM112
    os.environ.setdefault("dramatiq_prom_host", os.environ.get("METRICS_HOST", "0.0.0.0"))
