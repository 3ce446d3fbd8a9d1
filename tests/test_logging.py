"""Log redaction on the JSON lines the application really writes: a process configured as
the gateway and workers configure themselves logs credentials in every form they take
(keyword values, nested dicts, free text, stdlib loggers, exception messages and
tracebacks, objects' reprs), and none of the secret values reaches stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from shared.logging import REDACTED, redact_secrets, redact_text, redact_url_paths

#: Each secret the child process holds, by what it is.
SECRETS = {
    "api key": "srv-key-7d9c2a1b0e4f",
    "rotated api key": "srv-key-old-5b6a7c8d",
    "user token secret": "user-token-secret-1f2e3d4c5b6a79880",
    "smtp password": "smtp-pw-a1b2c3d4",
    "twilio auth token": "twilio-token-9z8y7x6w5v",
    "database password": "pg-pw-0a9b8c7d",
    "broker password": "amqp-pw-6e5f4a3b",
    "redis password": "redis-pw-2c1d0e9f",
    "webhook secret": "whsec_c2VjcmV0LWJ5dGVzLWZvci10ZXN0cw==",
    "fernet key": "a2V5LWJ5dGVzLWZvci1mZXJuZXQtdGVzdHMtMzJieXRlcyE=",
    "user jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4iLCJleHAiOjk5OTk5OTk5OTl9.c2lnbmF0dXJlLWJ5dGVz",
    "bearer in text": "opaque-bearer-credential-42",
    "password in a query": "qp-pw-31415926",
}

ENVIRONMENT = {
    "API_KEYS": f"{SECRETS['api key']},{SECRETS['rotated api key']}",
    "USER_TOKEN_SECRET": SECRETS["user token secret"],
    "EMAIL_HOST": "smtp.example.com",
    "EMAIL_USER": "mailer",
    "EMAIL_PASSWORD": SECRETS["smtp password"],
    "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
    "TWILIO_AUTH_TOKEN": SECRETS["twilio auth token"],
    "TWILIO_PHONE_NUMBER": "+15005550006",
    "DATABASE_URL": f"postgresql://kai:{SECRETS['database password']}@db.internal:5432/kai",
    "BROKER_URL": f"amqp://kai:{SECRETS['broker password']}@mq.internal:5672/kai",
    "REDIS_URL": f"redis://:{SECRETS['redis password']}@cache.internal:6379/0",
    "WEBHOOK_SECRET": SECRETS["webhook secret"],
    "WEBHOOK_ENCRYPTION_KEYS": SECRETS["fernet key"],
    "LOG_LEVEL": "INFO",
}

#: What the child logs: the application's own logger, a library's stdlib logger, failures.
CHILD = textwrap.dedent(
    """
    import logging, os
    from shared.config import Settings
    from shared.errors import TemporaryDeliveryError
    from shared.logging import configure_logging, get_logger, secret_values

    settings = Settings.from_env(os.environ)
    configure_logging(settings.log_level, secret_values(settings))
    log = get_logger("kai.test")
    s = {secrets!r}

    log.info("request.headers", headers={{"Authorization": "Bearer " + s["api key"], "X-Other": "fine"}})
    log.info("provider.config", config={{"smtp": {{"user": "mailer", "password": s["smtp password"]}},
             "twilio": [{{"sid": "AC1", "auth_token": s["twilio auth token"]}}]}})
    log.info("free.text", note="sent with Authorization: Bearer " + s["bearer in text"] + " ok")
    log.info("key.in.text", note="the caller used " + s["rotated api key"] + " for this")
    log.info("urls", db=os.environ["DATABASE_URL"], broker=os.environ["BROKER_URL"],
             cache=os.environ["REDIS_URL"])
    log.info("webhook", detail="signed with " + s["webhook secret"])
    log.info("jwt", raw=s["user jwt"], query="/api/notifications/stream?access_token=" + s["user jwt"])
    log.info("query", url="https://partner.example.com/cb?user=a&password=" + s["password in a query"])
    log.info("settings.repr", settings=settings)
    log.info("positional %s", s["user token secret"])
    logging.getLogger("pika.connection").warning("connecting to %s", os.environ["BROKER_URL"])
    logging.getLogger("httpx").warning("HTTP Request: POST https://api.example.com Authorization: Bearer "
                                       + s["bearer in text"])
    try:
        try:
            raise ConnectionError("could not reach " + os.environ["DATABASE_URL"])
        except ConnectionError as exc:
            raise TemporaryDeliveryError(
                "provider said 401 for https://AC1:" + s["twilio auth token"] + "@api.twilio.com/x"
            ) from exc
    except TemporaryDeliveryError:
        log.exception("delivery.unexpected_error", message_id="m1")
    try:
        raise RuntimeError("fernet key " + s["fernet key"] + " refused")
    except RuntimeError:
        logging.getLogger("dramatiq.worker").exception("actor failed")
    """
)


@pytest.fixture(scope="module")
def child_log() -> tuple[str, list[dict[str, Any]]]:
    """Run the child once; its stderr, and that stderr read as JSON lines."""
    env = {**os.environ, **ENVIRONMENT}
    env.pop("MIGRATION_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(secrets=SECRETS)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    return done.stderr, lines


@pytest.mark.parametrize("what", list(SECRETS))
def test_no_secret_reaches_the_log(child_log: tuple[str, list[dict[str, Any]]], what: str) -> None:
    stderr, _ = child_log
    assert SECRETS[what] not in stderr


def test_every_line_is_json_and_context_survives(child_log: tuple[str, list[dict[str, Any]]]) -> None:
    """Redaction removes the secret, not the line: hosts, users and events stay readable."""
    stderr, lines = child_log
    events = [line["event"] for line in lines]

    assert len(lines) == 14
    assert "delivery.unexpected_error" in events and "actor failed" in events
    assert "db.internal" in stderr and "mailer" in stderr and "X-Other" in stderr
    by_event = {line["event"]: line for line in lines}
    assert by_event["urls"]["db"] == f"postgresql://kai:{REDACTED}@db.internal:5432/kai"
    assert by_event["request.headers"]["headers"] == {"Authorization": REDACTED, "X-Other": "fine"}
    assert "Traceback" in by_event["delivery.unexpected_error"]["exception"]
    assert "ConnectionError" in by_event["delivery.unexpected_error"]["exception"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-ghi", f"Authorization: {REDACTED}"),
        ('{"authorization": "Basic dXNlcjpwYXNz"}', f'{{"authorization": "{REDACTED}"}}'),
        ("sent Bearer abc123 then", f"sent Bearer {REDACTED} then"),
        ("secret whsec_QUJDRA== used", f"secret {REDACTED} used"),
        ("amqp://guest:guest-pw@host:5672/", f"amqp://guest:{REDACTED}@host:5672/"),
        ("redis://:pw@host/0", f"redis://:{REDACTED}@host/0"),
        ("https://example.com/path:8080@x", "https://example.com/path:8080@x"),
        ("?token=abc&api_key=def&page=2", f"?token={REDACTED}&api_key={REDACTED}&page=2"),
        ("password: hunter2, user: ann", f"password: {REDACTED}, user: ann"),
        ("jwt eyJhbGciOi.eyJzdWIiOi.sig_-x end", f"jwt {REDACTED} end"),
        ("nothing secret here: 42 tokens", "nothing secret here: 42 tokens"),
    ],
)
def test_credentials_inside_strings_are_redacted(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_the_processor_redacts_every_key_but_structlog_bookkeeping() -> None:
    event = {"_password": "p", "_note": "Bearer abc", "exc_info": True, "count": 3, "obj": object()}

    redacted = redact_secrets(None, "info", dict(event))

    assert redacted["_password"] == REDACTED and redacted["_note"] == f"Bearer {REDACTED}"
    assert redacted["exc_info"] is True and redacted["count"] == 3
    assert redacted["obj"].startswith("<object object at ")


def test_settings_keep_their_secrets_out_of_repr() -> None:
    """Given settings holding every kind of secret, then repr() (what tracebacks, debuggers
    and careless f-strings print) shows none of them."""
    from shared.config import Settings

    secrets = {
        "API_KEYS": "key-one-5b1e,key-two-77aa",
        "USER_TOKEN_SECRET": "token-secret-e2f0",
        "USER_TOKEN_PREVIOUS_SECRETS": "old-token-secret-91cd",
        "WEBHOOK_SECRET": "whsec_c2VjcmV0LXZhbHVlLTEyMzQ1Njc4",
        "EMAIL_PASSWORD": "smtp-password-3d4c",
        "TWILIO_AUTH_TOKEN": "twilio-token-8a9b",
    }
    shown = repr(Settings.from_env(secrets))
    for name, value in secrets.items():
        for part in value.split(","):
            assert part not in shown, name


#: Loggers of the libraries that make requests for us (or for the tests' clients).
LIBRARY_LOGGERS = (
    "httpx",
    "httpcore.http11",
    "aiohttp.client",
    "urllib3.connectionpool",
    "requests",
    "twilio.http_client",
    "aiosmtplib",
    "aiormq.connection",
)

#: A webhook URL whose path is its credential, as chat services' incoming webhooks have.
PATH_SECRET = "T0KAI/B0KAI/" + "q7" * 12
WEBHOOK_URL = f"https://hooks.example.com/services/{PATH_SECRET}?token=abc"

#: What the child logs: every library that talks HTTP (or SMTP, AMQP) narrating a request
#: below warning, one library warning and one of our own lines naming the URL.
LIBRARIES_CHILD = textwrap.dedent(
    f"""
    import logging
    from shared.logging import configure_logging, get_logger

    configure_logging("DEBUG")
    for name in {LIBRARY_LOGGERS!r}:
        logging.getLogger(name).info("POST %s", {WEBHOOK_URL!r})
        logging.getLogger(name).debug("POST %s", {WEBHOOK_URL!r})
    logging.getLogger("aiohttp.client").warning("giving up on %s", {WEBHOOK_URL!r})
    get_logger("kai.test").warning("delivery.failed", error="webhook URL refused: " + {WEBHOOK_URL!r})
    logging.getLogger("kai.own").info("still here")
    """
)


def test_libraries_log_no_request_and_urls_keep_only_their_host() -> None:
    """Given logging at DEBUG, when the HTTP, SMTP and AMQP libraries narrate requests, then
    none of it is written (only their warnings are), and every URL that does reach the log,
    a library's or our own, keeps its host but not its path or query."""
    done = subprocess.run(
        [sys.executable, "-c", LIBRARIES_CHILD], capture_output=True, text=True, timeout=120, check=True
    )
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]

    assert PATH_SECRET not in done.stderr and "q7q7" not in done.stderr
    assert [line["event"] for line in lines] == [
        "giving up on https://hooks.example.com/[redacted]",
        "delivery.failed",
        "still here",
    ]
    assert lines[1]["error"] == "webhook URL refused: https://hooks.example.com/[redacted]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://hooks.example.com/services/T0/B0/abc", "https://hooks.example.com/[redacted]"),
        ("http://10.0.0.5:8080/x?y=1 refused", "http://10.0.0.5:8080/[redacted] refused"),
        (
            "see https://example.com/ or http://h.example.com",
            "see https://example.com/ or http://h.example.com",
        ),
        ("'https://a.example/p'", "'https://a.example/[redacted]'"),
        ("postgresql://kai@db.internal:5432/kai", "postgresql://kai@db.internal:5432/kai"),
    ],
)
def test_http_urls_lose_their_path_and_query(text: str, expected: str) -> None:
    assert redact_url_paths(text) == expected
