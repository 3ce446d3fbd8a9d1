"""``kai-messaging``: the one command for running and operating the service.

kai-messaging run [--port 8000]        gateway + every channel worker in one process (dev)
kai-messaging gateway [--port 8000]    the HTTP gateway (enqueue only)
kai-messaging worker email [sms …|events] [--processes N] [--threads M]
kai-messaging migrate                  apply database migrations
kai-messaging send email --to … --subject … --text …   (or --template KEY --data JSON)
kai-messaging send … --send-at T | --local-time HH:MM | --delay-ms N   schedule it
kai-messaging cancel ID                stop a message that has not started
kai-messaging event TYPE [--user-id U] [--data JSON]   queue an event for the rules
kai-messaging status [ID]              the fleet's queues, or a message's delivery status
kai-messaging health                   is the database, the broker and Redis reachable
kai-messaging dlq list|replay CHANNEL  inspect or replay dead-lettered messages
kai-messaging starter [--dry-run]      add the starter templates and rules for every event type
kai-messaging bounces [--port 2525]    an SMTP server for EMAIL_BOUNCE_ADDRESS: bounces and complaints in

Exit codes: 0 success, 1 a failure (a service down, a message not found), 2 a usage error
(an unknown flag or channel, JSON that does not parse, input the service refuses).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from cli import starter, worker
from cli.arguments import channel, json_object, json_value, port_number, positive_int, worker_queue
from shared.config import Settings, get_settings, log_webhook_network_policy, set_settings, startup_settings
from shared.errors import KaiError, ValidationError

#: Gateway defaults: loopback only unless told otherwise.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
#: Where ``bounces`` listens unless told otherwise: an unprivileged port behind the MX or MTA.
DEFAULT_BOUNCES_PORT = 2525


def _migrate(_args: argparse.Namespace) -> int:
    from migrations.migrate import upgrade

    upgrade(get_settings().owner_database_url)
    print("database is at the latest revision", file=sys.stderr)
    return 0


def _bounces(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib

    from producer.bounce_listener import serve

    settings = startup_settings(get_settings())
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: stop listening, nothing to flush
        asyncio.run(serve(settings, args.host, args.port))
    return 0


def _gateway(args: argparse.Namespace) -> int:
    from cli.serve import bind, browsable, serve
    from producer.gateway.serving import uvicorn_options

    settings = startup_settings(get_settings())  # fail fast on missing secrets before forking workers
    sock = bind(args.host, args.port)
    listening = f"kai-messaging gateway listening on {browsable(args.host, args.port)}"
    if not settings.is_production:
        listening += f" (dev API key in {settings.var_dir / 'dev-api-key'})"
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        import tempfile

        # Each uvicorn worker is its own process: merge their metrics on every /metrics call.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="kai-metrics-gateway-")
    serve(
        sock,
        "producer.gateway.asgi:build",
        lambda: print(listening, flush=True),
        workers=args.workers,
        factory=True,
        **uvicorn_options(settings),
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    """Everything in one process on the embedded defaults (or on the configured services)."""
    from cli.serve import StartupBlock, bind, browsable, quiet_startup_chatter, serve
    from migrations.migrate import upgrade
    from producer.gateway.app import create_app
    from producer.gateway.asgi import settle_heap
    from producer.gateway.serving import uvicorn_options
    from producer.starter import install_on_embedded_database
    from shared.logging import configure_logging, secret_values
    from workers.embedded import EmbeddedWorkers

    settings = startup_settings(get_settings())
    set_settings(settings)
    configure_logging(settings.log_level, secret_values(settings))
    quiet_startup_chatter(settings.log_level)  # configure_logging set the levels afresh
    sock = bind(args.host, args.port)  # before anything starts: a taken port changes nothing
    log_webhook_network_policy(settings)
    upgrade(settings.owner_database_url)
    install_on_embedded_database(settings)  # events produce messages out of the box
    app = create_app(settings)
    settle_heap()
    block = StartupBlock(
        base_url=browsable(args.host, args.port),
        settings=settings,
        paths=frozenset(str(getattr(route, "path", "")) for route in app.routes),
    )
    workers = EmbeddedWorkers(settings)
    workers.start()
    try:
        serve(sock, app, lambda: block.print(sys.stdout), **uvicorn_options(settings))
    finally:
        workers.stop()
    return 0


#: Attributes of a parsed `send` command that are not fields of the message.
_NOT_FIELDS = frozenset({"func", "channel", "command"})


def _send(args: argparse.Namespace) -> int:
    from producer import notification_service
    from producer.background import background

    fields = {k: v for k, v in vars(args).items() if k not in _NOT_FIELDS and v is not None}
    if "local_time" in fields:
        fields["send_at"] = {"local_time": fields.pop("local_time")}
    # The gateway's answer, so a scheduled message shows its send time (and zone).
    print(json.dumps(background().run(notification_service.aaccept(args.channel, fields))))
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from producer import notification_service

    print(json.dumps(notification_service.cancel(args.message_id)))
    return 0


def _event(args: argparse.Namespace) -> int:
    from producer import event_notification_service

    event_id = event_notification_service.process_event(
        event_type=args.event_type,
        user_id=args.user_id,
        data=args.data,
        idempotency_key=args.idempotency_key,
    )
    print(json.dumps({"id": event_id, "status": "queued"}))
    return 0


def _embedded_components(settings: Settings) -> dict[str, str]:
    """On the embedded defaults the broker lives in the memory of the `kai-messaging run`
    process and the rate limiter in each process: a second process cannot check them, so
    "ok" would be a statement about nothing. What it can say instead, per component."""
    described: dict[str, str] = {}
    if settings.embedded_broker:
        from shared import handoff

        try:
            described["broker"] = handoff.describe(settings)
        except Exception:  # the database has no tables yet: nothing can be waiting
            described["broker"] = (
                "embedded: in the memory of the 'kai-messaging run' process, not visible from here"
            )
    if settings.redis_url is None:
        described["redis"] = "embedded: an in-process rate limiter in each process (no REDIS_URL)"
    return described


def _status(args: argparse.Namespace) -> int:
    if args.message_id:
        from producer import notification_service

        print(json.dumps(notification_service.get_status(args.message_id), indent=2))
        return 0
    from cli.fleet_status import as_dicts, render
    from producer.fleet import fleet_status

    settings = get_settings()
    statuses = fleet_status(settings)
    broker = _embedded_components(settings).get("broker")
    if args.json:
        print(json.dumps(as_dicts(statuses), indent=2))
        if broker is not None:  # stdout stays one JSON document
            print(f"kai-messaging: queue columns are empty: broker {broker}", file=sys.stderr)
    else:
        render(statuses)
        if broker is not None:
            print(f"queue columns are empty: broker {broker}")
    return 0


def _vapid_keys(_args: argparse.Namespace) -> int:
    """Print a new VAPID key pair for web push, as .env lines."""
    from workers.providers.webpush import generate_vapid_keys

    private, public = generate_vapid_keys()
    print(f"VAPID_PRIVATE_KEY={private}")
    print(f"# the public key (GET /api/push/vapid-public-key serves it to pages): {public}")
    return 0


def _health(_args: argparse.Namespace) -> int:
    """Exit 0 when the database, the broker and Redis answer (a probe for workers); on the
    embedded defaults only the database can be checked from another process."""
    from shared.health import readiness

    settings = get_settings()
    checks = readiness(settings)
    embedded = _embedded_components(settings)
    print(json.dumps({**checks, **embedded}))
    return 0 if all(v == "ok" for name, v in checks.items() if name not in embedded) else 1


def _dlq(args: argparse.Namespace) -> int:
    from producer.dead_letters import list_dead, replay_dead

    if args.action == "list":
        for entry in list_dead(get_settings(), args.channel, limit=args.limit):
            print(json.dumps(entry))
        return 0
    replayed = replay_dead(get_settings(), args.channel, limit=args.limit)
    print(json.dumps({"replayed": replayed}))
    return 0


#: The fields of each channel's `send` subcommand, with their help.
SEND_FLAGS: dict[str, tuple[tuple[str, str], ...]] = {
    "email": (
        ("to", "recipient address"),
        ("subject", "subject line"),
        ("text", "plain-text body"),
        ("html", "HTML body"),
    ),
    "sms": (("to", "recipient phone number in E.164 form, e.g. +14155550100"), ("message", "the text")),
    "webhook": (("url", "http(s) URL to POST to"),),
    "in-app": (
        ("user_id", "the user whose inbox receives it"),
        ("title", "title"),
        ("message", "the text"),
        ("type", "info, success, warning or error"),
        ("action_url", "link opened from the notification"),
    ),
    "push": (
        ("user_id", "the user whose devices receive it"),
        ("title", "title"),
        ("body", "the text"),
        ("url", "link opened from the notification"),
    ),
    "chat": (
        ("service", "slack or teams"),
        ("to", "a Slack channel or member id (the bot token)"),
        ("webhook_url", "an incoming webhook URL (Slack or Teams)"),
        ("text", "the text"),
    ),
}


def _serving_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--host",
        default=os.environ.get("HOST", DEFAULT_HOST),
        help=f"address to listen on (default: $HOST or {DEFAULT_HOST}; 0.0.0.0 for every interface)",
    )
    p.add_argument(
        "--port",
        type=port_number,
        default=os.environ.get("PORT", str(DEFAULT_PORT)),
        help=f"port to listen on (default: $PORT or {DEFAULT_PORT})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kai-messaging",
        description="KAI Messaging: run and operate the notification service.",
        epilog="Configuration comes from the environment (and .env); see the README.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="the gateway and every channel worker in one process (development)")
    _serving_flags(p)
    p.set_defaults(func=_run)

    p = sub.add_parser("gateway", help="the HTTP gateway only (enqueues; workers deliver)")
    _serving_flags(p)
    p.add_argument("--workers", type=positive_int, default=1, help="uvicorn worker processes (default: 1)")
    p.set_defaults(func=_gateway)

    p = sub.add_parser("worker", help="a worker pool for some channels (needs BROKER_URL)")
    p.add_argument(
        "channels",
        nargs="+",
        type=worker_queue,
        metavar="CHANNEL",
        help="email, sms, webhook, in_app or events",
    )
    p.add_argument(
        "--processes",
        "-p",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="worker processes (default: one per CPU)",
    )
    p.add_argument("--threads", "-t", type=positive_int, default=8, help="threads per process (default: 8)")
    p.add_argument(
        "--metrics-port",
        type=port_number,
        default=os.environ.get("METRICS_PORT", "9191"),
        help="port of the pool's Prometheus metrics (default: $METRICS_PORT or 9191)",
    )
    p.set_defaults(func=worker.run_pool)

    p = sub.add_parser(
        "bounces", help="an SMTP server taking bounces and complaints for EMAIL_BOUNCE_ADDRESS"
    )
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default: {DEFAULT_HOST})")
    p.add_argument(
        "--port",
        type=port_number,
        default=str(DEFAULT_BOUNCES_PORT),
        help=f"(default: {DEFAULT_BOUNCES_PORT})",
    )
    p.set_defaults(func=_bounces)

    p = sub.add_parser(
        "migrate", help="apply the database migrations (MIGRATION_DATABASE_URL or DATABASE_URL)"
    )
    p.set_defaults(func=_migrate)

    p = sub.add_parser("send", help="enqueue one message and print its id")
    send_sub = p.add_subparsers(dest="channel", required=True, metavar="CHANNEL")
    for name, flags in SEND_FLAGS.items():
        c = send_sub.add_parser(name, help=f"enqueue one {name} message")
        c.set_defaults(channel=channel(name))
        for flag, help_text in flags:
            c.add_argument(f"--{flag.replace('_', '-')}", dest=flag, help=help_text)
        if name == "webhook":
            c.add_argument("--payload", type=json_value, help="the JSON body to send")
        if name not in ("in-app", "push"):
            c.add_argument("--user-id", dest="user_id", help="the user it is for (preferences apply)")
        c.add_argument(
            "--idempotency-key", dest="idempotency_key", help="the same key again enqueues nothing new"
        )
        c.add_argument("--template", help="a template key instead of literal content")
        c.add_argument("--data", type=json_object, help="the template's data, as a JSON object")
        c.add_argument("--locale", help="the template locale (default: TEMPLATE_DEFAULT_LOCALE)")
        # None unless given: an absent flag is not a field of the message.
        c.add_argument(
            "--transactional",
            action="store_true",
            default=None,
            help="a receipt or a password reset, not a campaign: an email is never tracked",
        )
        when = c.add_mutually_exclusive_group()
        when.add_argument("--send-at", dest="send_at", help="send at this RFC 3339 time (with its offset)")
        when.add_argument(
            "--local-time",
            dest="local_time",
            metavar="HH:MM",
            help="send at the next HH:MM in the user's time zone (from their preferences; else UTC)",
        )
        when.add_argument("--delay-ms", dest="delay_ms", type=positive_int, help="send this many ms from now")
    p.set_defaults(func=_send)

    p = sub.add_parser("cancel", help="cancel a message that has not started (scheduled, or not yet taken)")
    p.add_argument("message_id", metavar="ID", help="the id `send` printed")
    p.set_defaults(func=_cancel)

    p = sub.add_parser("event", help="queue an event for the notification rules and print its id")
    p.add_argument("event_type", metavar="EVENT_TYPE", help="e.g. subscription.payment_failed")
    p.add_argument("--user-id", dest="user_id", help="the user the event is about")
    p.add_argument("--data", type=json_object, help="the event's data, as a JSON object")
    p.add_argument("--idempotency-key", dest="idempotency_key", help="the same key again queues nothing new")
    p.set_defaults(func=_event)

    p = sub.add_parser("status", help="queue depths, consumers and recent outcomes; or one message's status")
    p.add_argument("message_id", nargs="?", metavar="ID", help="a message id: show that message")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_status)

    p = sub.add_parser("vapid-keys", help="print a new VAPID key pair for web push (VAPID_PRIVATE_KEY)")
    p.set_defaults(func=_vapid_keys)

    p = sub.add_parser("health", help="check the database, broker and Redis (exit 1 if any is down)")
    p.set_defaults(func=_health)

    p = sub.add_parser("dlq", help="dead-lettered messages (needs BROKER_URL)")
    p.add_argument(
        "action", choices=["list", "replay"], help="list them, or give them a new round of attempts"
    )
    p.add_argument("channel", type=channel, metavar="CHANNEL", help="email, sms, webhook or in_app")
    p.add_argument("--limit", type=positive_int, default=100, help="at most this many (default: 100)")
    p.set_defaults(func=_dlq)
    starter.add_parser(sub)
    return parser


def _refused(exc: ValidationError) -> str:
    details = "; ".join(
        f"{d.get('field')}: {d.get('message')}" if d.get("field") else str(d.get("message"))
        for d in exc.details
        if isinstance(d, dict)
    )
    return exc.message if not details or details in exc.message else f"{exc.message} ({details})"


#: Commands that do one thing and exit (not the serving ones).
_ONE_SHOT = frozenset({_migrate, _send, _cancel, _event, _status, _health, _dlq})


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; usage errors and failures end in one line on stderr, never a traceback
    (LOG_LEVEL=DEBUG adds it)."""
    from cli.failures import describe
    from cli.serve import quiet_startup_chatter
    from shared.logging import configure_logging

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse has printed the usage error or the help
        return exit_.code if isinstance(exit_.code, int) else 2
    log_level = os.environ.get("LOG_LEVEL", "INFO")
    # Logs go to stderr as JSON, so a command's own output on stdout stays parseable.
    configure_logging(log_level)
    quiet_startup_chatter(log_level)
    if args.func in _ONE_SHOT and log_level.upper() != "DEBUG":
        # A one-shot command reports its own failure in one line; the client libraries'
        # error logs of the same refused connection (with tracebacks) would bury it.
        for name in ("pika", "aiormq", "redis"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        code: int = args.func(args)
    except ValidationError as exc:
        print(f"kai-messaging: refused: {_refused(exc)}", file=sys.stderr)
        # A conflict with the message's state (already sent, already canceled) is no usage error.
        return 1 if exc.status_code == 409 else 2
    except KaiError as exc:
        print(f"kai-messaging: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if log_level.upper() == "DEBUG":
            traceback.print_exc()
        print(f"kai-messaging: {describe(exc)}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
