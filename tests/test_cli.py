"""``kai-messaging``: the operator commands against the real services."""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from cli.main import build_parser, main
from producer.service import NotificationService
from shared.channels import Channel
from shared.config import Settings
from tests import running
from tests.conftest import Fleet, final_status
from tests.gateway.server import free_port
from tests.waiting import wait_until


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_status_shows_depths_consumers_and_recent_outcomes(
    settings: Settings, fleet: Callable[..., Fleet], capsys: pytest.CaptureFixture[str]
) -> None:
    """Given a message waiting on the sms queue and one delivered in-app message, the status
    command reports the sms depth, the in-app consumers and the recent delivery."""
    service = NotificationService(settings)
    service.send_sms(to="+14155550100", message="waiting")
    fleet(settings, [Channel.IN_APP])
    final_status(service, service.send_in_app_notification(user_id="u1", title="t", message="m"))

    code, out = run(capsys, "status", "--json")

    assert code == 0
    rows = {row["queue"]: row for row in json.loads(out)}
    assert rows["sms"]["depth"] == 1
    assert rows["in_app"]["consumers"] >= 1
    assert rows["in_app"]["recent"] == {"delivered": 1}
    assert rows["email"]["dead_lettered"] == 0


def test_status_of_one_message(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    message_id = NotificationService(settings).send_sms(to="+14155550100", message="hi")

    code, out = run(capsys, "status", message_id)

    assert code == 0
    assert json.loads(out)["status"] == "queued"


def test_the_table_renders(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    code, out = run(capsys, "status")
    assert code == 0
    assert "in_app" in out and "dead-lettered" in out


def test_health_probe(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "health")
    assert code == 0
    assert json.loads(out) == {"database": "ok", "broker": "ok", "redis": "ok"}


def test_health_probe_fails_when_the_broker_is_unreachable(
    make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.config import set_settings

    set_settings(make_settings(BROKER_URL="amqp://guest:guest@127.0.0.1:1/"))
    try:
        code, out = run(capsys, "health")
    finally:
        set_settings(None)
    assert code == 1
    assert json.loads(out)["broker"].startswith("unavailable")


def test_dlq_list_and_replay(
    make_settings: Callable[..., Settings], fleet: Callable[..., Fleet], capsys: pytest.CaptureFixture[str]
) -> None:
    """Given a message that exhausted its retries (dead-lettered and failed), `dlq list`
    shows it and `dlq replay` gives it a new round that delivers it."""
    from tests.conftest import WEBHOOK_SECRET
    from tests.sinks.webhook_receiver import WebhookReceiver

    settings = make_settings()
    with WebhookReceiver(WEBHOOK_SECRET) as receiver:
        receiver.respond_next(503, times=3)
        fleet(settings, [Channel.WEBHOOK])
        service = NotificationService(settings)
        message_id = service.send_webhook(url=receiver.url, payload={"x": 1})
        assert final_status(service, message_id)["status"] == "failed"

        def listed() -> bool:
            code, out = run(capsys, "dlq", "list", "webhook")
            return code == 0 and message_id in out

        wait_until(listed, timeout=10, message="dead-lettered message not listed")
        code, out = run(capsys, "dlq", "replay", "webhook")
        assert code == 0 and json.loads(out) == {"replayed": 1}

        view = final_status(service, message_id)
        assert view["status"] == "delivered"
        assert view["attempts"] == 4


# The command line as a developer meets it: `run`'s start-up, usage errors and failures, each
# one line on stderr with the exit code saying which (2 usage, 1 failure), never a traceback.


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("{")]
    assert "Traceback" not in stderr, stderr
    assert len(lines) >= 1, stderr
    return lines[-1]


def test_run_prints_the_key_and_urls_once_it_serves(tmp_path: Path) -> None:
    """Given PORT in the environment, when `kai-messaging run` starts, then once it answers it
    prints the dev API key and the URLs on that port, and SIGTERM ends it with exit code 0."""
    port = free_port()
    instance = running.start(tmp_path, env=running.embedded_env(PORT=str(port)))
    try:
        block = instance.stdout()
        assert instance.port == port
        assert httpx.get(f"{instance.url}/healthz", timeout=5).status_code == 200
        assert f"API key    {instance.key}" in block
        assert f"http://127.0.0.1:{port}/docs" in block
        assert f"http://127.0.0.1:{port}/inbox" in block
        assert f"http://127.0.0.1:{port}/healthz" in block
        assert "--port" in block and "PORT=" in block
        assert block.count("listening") == 1
        assert "Running upgrade" not in instance.stderr()  # migrations say nothing at INFO
    finally:
        assert instance.stop() == 0


def test_run_on_a_taken_port_fails_in_one_line(tmp_path: Path) -> None:
    """Given the port is taken, when `kai-messaging run --port` starts, then it exits 1 with one
    line naming the port, prints no "listening" and starts nothing."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = running.cli("run", "--port", str(port), cwd=tmp_path)

    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in one_error_line(result.stderr)
    assert "listening" not in result.stdout + result.stderr
    assert not (tmp_path / "var" / "kai-messaging.db").exists()


def test_gateway_with_worker_processes_serves_the_port_it_bound(tmp_path: Path) -> None:
    """Given `kai-messaging gateway --workers 2`, when it starts, then it prints where it listens,
    its worker processes answer on that port, and SIGTERM ends it with exit code 0."""
    assert running.cli("migrate", cwd=tmp_path).returncode == 0
    port = free_port()
    out = tmp_path / "gateway.stdout"
    with out.open("wb") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "gateway", "--port", str(port), "--workers", "2"],
            cwd=tmp_path,
            env=running.embedded_env(),
            stdout=stdout,
            stderr=subprocess.DEVNULL,
        )

    def healthy() -> bool:
        assert process.poll() is None, f"gateway exited {process.returncode}"
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, timeout=90, message="gateway with two workers did not answer")
        assert f"kai-messaging gateway listening on http://127.0.0.1:{port}" in out.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    assert code == 0


@pytest.mark.parametrize(
    ("argv", "env", "says"),
    [
        (["dlq", "list", "bogus"], {}, "unknown channel 'bogus'"),
        (["event", "x", "--data", "{bad"], {}, "argument --data: not valid JSON"),
        (["event", "x", "--data", "[1]"], {}, "must be a JSON object"),
        (
            ["send", "webhook", "--url", "https://example.com", "--payload", "{"],
            {},
            "--payload: not valid JSON",
        ),
        (["send", "fax", "--to", "x"], {}, "invalid choice: 'fax'"),
        (["worker", "bogus"], {}, "unknown channel 'bogus'"),
        (["run", "--port", "0"], {}, "port must be between 1 and 65535"),
        (["run"], {"PORT": "eighty"}, "not a port number: 'eighty'"),
        (["dlq", "list", "email", "--limit", "-3"], {}, "must be 1 or more"),
        (["frobnicate"], {}, "invalid choice: 'frobnicate'"),
        (["send", "sms", "--to", "12", "--message", "hi"], {}, "refused: to: phone number must be in E.164"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    tmp_path: Path, argv: list[str], env: dict[str, str], says: str
) -> None:
    result = running.cli(*argv, cwd=tmp_path, env=running.embedded_env(**env))

    assert result.returncode == 2, result.stderr
    assert says in one_error_line(result.stderr)
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("argv", "env", "says"),
    [
        (["dlq", "list", "email"], {}, "the dead-letter queues live in RabbitMQ: set BROKER_URL"),
        (
            ["dlq", "list", "email"],
            {"BROKER_URL": "amqp://guest:secret@127.0.0.1:1/", "API_KEYS": "k"},
            "RabbitMQ (BROKER_URL) cannot be reached",
        ),
        (
            ["status", "--json"],
            {"DATABASE_URL": "postgresql+psycopg://kai:secret@127.0.0.1:1/kai"},
            "the database cannot be used",
        ),
        (["status", "6f0c1b9e-0000-4000-8000-000000000000"], {}, "run `kai-messaging migrate` first"),
    ],
)
def test_failures_exit_1_with_one_line(
    tmp_path: Path, argv: list[str], env: dict[str, str], says: str
) -> None:
    result = running.cli(*argv, cwd=tmp_path, env=running.embedded_env(**env))

    assert result.returncode == 1, result.stderr
    line = one_error_line(result.stderr)
    assert says in line
    assert "secret" not in result.stderr


def test_an_unknown_message_id_is_one_line(tmp_path: Path) -> None:
    assert running.cli("migrate", cwd=tmp_path).returncode == 0

    result = running.cli("status", "6f0c1b9e-0000-4000-8000-000000000000", cwd=tmp_path)

    assert result.returncode == 1
    assert (
        one_error_line(result.stderr)
        == "kai-messaging: no message with id 6f0c1b9e-0000-4000-8000-000000000000"
    )


def test_health_says_what_it_cannot_see_on_the_embedded_defaults(tmp_path: Path) -> None:
    """On the embedded defaults a second process cannot see the broker inside `run` (nor its
    rate limiter): `health` says so instead of "ok", and checks the database it shares."""
    assert running.cli("migrate", cwd=tmp_path).returncode == 0

    result = running.cli("health", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    checks = json.loads(result.stdout)
    assert checks["database"] == "ok"
    assert checks["broker"].startswith("embedded: in the memory of the 'kai-messaging run' process")
    assert "0 message(s) waiting" in checks["broker"]
    assert checks["redis"].startswith("embedded:")


def test_status_says_its_queue_columns_are_empty_on_the_embedded_defaults(tmp_path: Path) -> None:
    assert running.cli("migrate", cwd=tmp_path).returncode == 0

    table = running.cli("status", cwd=tmp_path, env=running.embedded_env(COLUMNS="160"))
    as_json = running.cli("status", "--json", cwd=tmp_path)

    assert table.returncode == 0 and as_json.returncode == 0
    assert "queue columns are empty: broker embedded: in the memory of" in table.stdout
    assert json.loads(as_json.stdout)[0]["depth"] is None
    assert "queue columns are empty" in as_json.stderr


def test_every_command_and_flag_has_help() -> None:
    """`--help` explains every subcommand and every flag."""
    undocumented = []

    def visit(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help for choice in action._choices_actions}
                for name, child in action.choices.items():
                    if not helps.get(name):
                        undocumented.append(f"{path} {name}")
                    visit(child, f"{path} {name}")
            elif not action.help:
                undocumented.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    visit(build_parser(), "kai-messaging")
    assert undocumented == []


def test_help_names_the_port_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--port" in out and "$PORT" in out


def test_send_can_schedule_and_cancel_can_stop_it(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`send --delay-ms` answers `scheduled` with its send time; `cancel` then stops it, and a
    second `cancel` is refused as a failure (it has already been canceled)."""
    code, out = run(
        capsys, "send", "sms", "--to", "+14155550100", "--message", "later", "--delay-ms", "60000"
    )
    assert code == 0
    answer = json.loads(out)
    assert answer["status"] == "scheduled"
    assert "sendAt" in answer

    code, out = run(capsys, "cancel", answer["id"])
    assert code == 0
    assert json.loads(out)["status"] == "canceled"
    assert NotificationService(settings).get_status(answer["id"])["status"] == "canceled"

    assert run(capsys, "cancel", answer["id"])[0] == 1


def test_send_at_a_local_time_names_the_zone(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    """A user without a time zone in their preferences is scheduled in UTC, and told so."""
    code, out = run(
        capsys,
        "send",
        "in-app",
        "--user-id",
        "u-cli",
        "--title",
        "t",
        "--message",
        "m",
        "--local-time",
        "09:00",
    )

    assert code == 0
    answer = json.loads(out)
    assert (answer["status"], answer["timezone"]) == ("scheduled", "UTC")


def test_send_can_mark_a_message_transactional(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`send --transactional` stores the message transactional; without it, it is not."""
    base = ["send", "email", "--to", "ann@example.com", "--subject", "Receipt", "--text", "Paid"]

    flagged = json.loads(run(capsys, *base, "--transactional")[1])["id"]
    plain = json.loads(run(capsys, *base)[1])["id"]

    service = NotificationService(settings)
    assert service.get_status(flagged)["transactional"] is True
    assert "transactional" not in service.get_status(plain)


def test_send_refuses_two_send_times(tmp_path: Path) -> None:
    result = running.cli(
        "send",
        "sms",
        "--to",
        "+14155550100",
        "--message",
        "m",
        "--delay-ms",
        "5",
        "--send-at",
        "2030-01-01T00:00:00Z",
        cwd=tmp_path,
        env=running.embedded_env(),
    )

    assert result.returncode == 2
    assert "not allowed with argument" in one_error_line(result.stderr)
