"""``kai-messaging``: the one command for running and operating the service.

kai-messaging run                      gateway + every channel worker in one process (dev)
kai-messaging gateway [--port 8000]    the HTTP gateway (enqueue only)
kai-messaging worker email [sms …|events] [--processes N] [--threads M]
kai-messaging migrate                  apply database migrations
kai-messaging send email --to … --subject … --text …   (or --template KEY --data JSON)
kai-messaging event TYPE [--user-id U] [--data JSON]   queue an event for the rules
kai-messaging status ID                a message's delivery status
kai-messaging dlq list|replay CHANNEL  inspect or replay dead-lettered messages
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from cli import starter
from shared.channels import Channel
from shared.config import get_settings, log_webhook_network_policy, set_settings, startup_settings
from shared.errors import KaiError

#: Gateway defaults: loopback only unless told otherwise.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def _migrate(_args: argparse.Namespace) -> int:
    from migrations.migrate import upgrade

    upgrade(get_settings().owner_database_url)
    print("database is at the latest revision", file=sys.stderr)
    return 0


def _gateway(args: argparse.Namespace) -> int:
    import uvicorn

    startup_settings(get_settings())  # fail fast on missing secrets before forking workers
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        import tempfile

        # Each uvicorn worker is its own process: merge their metrics on every /metrics call.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="kai-metrics-gateway-")
    from producer.gateway.serving import uvicorn_options

    uvicorn.run(
        "producer.gateway.asgi:build",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        **uvicorn_options(get_settings()),
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    """Everything in one process on the embedded defaults (or on the configured services)."""
    import uvicorn

    from migrations.migrate import upgrade
    from producer.gateway.app import create_app
    from producer.gateway.serving import uvicorn_options
    from producer.starter import install_on_embedded_database
    from shared.logging import configure_logging, secret_values
    from workers.embedded import EmbeddedWorkers

    settings = startup_settings(get_settings())
    set_settings(settings)
    configure_logging(settings.log_level, secret_values(settings))
    log_webhook_network_policy(settings)
    upgrade(settings.owner_database_url)
    install_on_embedded_database(settings)  # events produce messages out of the box
    workers = EmbeddedWorkers(settings)
    workers.start()
    try:
        print(f"kai-messaging listening on http://{args.host}:{args.port}", file=sys.stderr)
        uvicorn.run(
            create_app(settings),
            host=args.host,
            port=args.port,
            log_config=None,
            access_log=False,
            **uvicorn_options(settings),
        )
    finally:
        workers.stop()
    return 0


def _worker(args: argparse.Namespace) -> int:
    settings = get_settings()
    if settings.embedded_broker:
        print(
            "kai-messaging worker needs BROKER_URL (RabbitMQ); on the embedded defaults "
            "'kai-messaging run' runs the workers inside the gateway process",
            file=sys.stderr,
        )
        return 2
    from shared.events.queue import EVENTS_QUEUE

    queues = [
        EVENTS_QUEUE if name == EVENTS_QUEUE else Channel.parse(name).queue_name for name in args.channels
    ]
    _prepare_worker_metrics(queues, args.metrics_port)
    argv = [
        "dramatiq",
        "workers.fleet",
        "--processes",
        str(args.processes),
        "--threads",
        str(args.threads),
        "--queues",
        *queues,
    ]
    from dramatiq.cli import main as dramatiq_main

    # Imported once here, before Dramatiq forks the worker processes: they inherit it instead
    # of each importing it again, most of a worker process's start-up CPU. (It opens nothing.)
    import workers.actors  # noqa: F401

    sys.argv = argv
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


def _send(args: argparse.Namespace) -> int:
    from producer import notification_service

    fields = {
        k: v for k, v in vars(args).items() if k not in {"func", "channel", "command"} and v is not None
    }
    for name in ("payload", "data"):
        if name in fields:
            fields[name] = json.loads(fields[name])
    message_id = notification_service.submit(Channel.parse(args.channel), fields)
    print(json.dumps({"id": message_id, "status": "queued"}))
    return 0


def _event(args: argparse.Namespace) -> int:
    from producer import event_notification_service

    event_id = event_notification_service.process_event(
        args.event_type,
        user_id=args.user_id,
        data=json.loads(args.data) if args.data else None,
        idempotency_key=args.idempotency_key,
    )
    print(json.dumps({"id": event_id, "status": "queued"}))
    return 0


def _status(args: argparse.Namespace) -> int:
    if args.message_id:
        from producer import notification_service

        print(json.dumps(notification_service.get_status(args.message_id), indent=2))
        return 0
    from cli.fleet_status import as_dicts, fleet_status, render

    statuses = fleet_status(get_settings())
    if args.json:
        print(json.dumps(as_dicts(statuses), indent=2))
    else:
        render(statuses)
    return 0


def _health(_args: argparse.Namespace) -> int:
    """Exit 0 when the database, the broker and Redis answer (a probe for workers)."""
    from shared.health import readiness

    checks = readiness(get_settings())
    print(json.dumps(checks))
    return 0 if all(v == "ok" for v in checks.values()) else 1


def _dlq(args: argparse.Namespace) -> int:
    from cli.dlq import list_dead, replay_dead

    channel = Channel.parse(args.channel)
    if args.action == "list":
        for entry in list_dead(get_settings(), channel, limit=args.limit):
            print(json.dumps(entry))
        return 0
    replayed = replay_dead(get_settings(), channel, limit=args.limit)
    print(json.dumps({"replayed": replayed}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kai-messaging", description=__doc__.splitlines()[0].strip("`: "))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("migrate", help="apply database migrations")
    p.set_defaults(func=_migrate)

    for name, func in (("gateway", _gateway), ("run", _run)):
        p = sub.add_parser(name, help="run the HTTP gateway" + (" and all workers" if name == "run" else ""))
        p.add_argument("--host", default=os.environ.get("HOST", DEFAULT_HOST))
        p.add_argument("--port", type=int, default=int(os.environ.get("PORT", DEFAULT_PORT)))
        if name == "gateway":
            p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
        p.set_defaults(func=func)

    p = sub.add_parser("worker", help="run channel worker pools")
    p.add_argument("channels", nargs="+", help="email, sms, webhook, in_app, events")
    p.add_argument("--processes", "-p", type=int, default=os.cpu_count() or 1)
    p.add_argument("--threads", "-t", type=int, default=8)
    p.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("METRICS_PORT", "9191")),
        help="Prometheus port",
    )
    p.set_defaults(func=_worker)

    p = sub.add_parser("send", help="enqueue one message")
    send_sub = p.add_subparsers(dest="channel", required=True)
    for channel, flags in (
        ("email", ("to", "subject", "text", "html")),
        ("sms", ("to", "message")),
        ("webhook", ("url", "payload")),
        ("in-app", ("user_id", "title", "message", "type", "action_url")),
    ):
        c = send_sub.add_parser(channel)
        for flag in flags:
            c.add_argument(f"--{flag.replace('_', '-')}", dest=flag)
        if channel != "in-app":
            c.add_argument("--user-id", dest="user_id")
        c.add_argument("--idempotency-key", dest="idempotency_key")
        c.add_argument("--template", help="a template key instead of literal content")
        c.add_argument("--data", help="the template's data, as JSON")
        c.add_argument("--locale")
    p.set_defaults(func=_send)

    p = sub.add_parser("event", help="queue an event for the notification rules")
    p.add_argument("event_type")
    p.add_argument("--user-id", dest="user_id")
    p.add_argument("--data", help="the event's data, as JSON")
    p.add_argument("--idempotency-key", dest="idempotency_key")
    p.set_defaults(func=_event)

    p = sub.add_parser("status", help="queue depths, consumers and recent outcomes; or one message's status")
    p.add_argument("message_id", nargs="?")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_status)

    p = sub.add_parser("health", help="check the database, broker and Redis (exit 1 if any is down)")
    p.set_defaults(func=_health)

    p = sub.add_parser("dlq", help="dead-lettered messages")
    p.add_argument("action", choices=["list", "replay"])
    p.add_argument("channel")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=_dlq)
    starter.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from shared.logging import configure_logging

    args = build_parser().parse_args(argv)
    # Logs go to stderr as JSON, so a command's own output on stdout stays parseable.
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    try:
        code: int = args.func(args)
    except KaiError as exc:
        print(f"kai-messaging: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
