"""Structured JSON logging with secrets redacted.

Every log line is one JSON object. Before anything is rendered, and again after an
exception's traceback has been turned into text, :func:`redact_secrets` removes:

- the value of any key that names a secret (password, token, secret, authorization, api
  key …), at any depth of nested dicts and lists;
- credentials inside any string: ``Bearer``/``Basic`` credentials, ``Authorization:``
  header values, ``whsec_`` webhook secrets, JSON Web Tokens, the password of a URL
  (``amqp://user:password@host``) and ``token=``/``password=`` style pairs;
- the literal values of this process's own secrets (API keys, the user-token secret, SMTP
  and Twilio credentials, URL passwords…), given to :func:`configure_logging`, wherever
  they appear;
- the path and query of every http(s) URL (:func:`redact_url_paths`): a webhook URL may
  carry its credential there (chat services' incoming webhooks do), so a URL is logged as
  its scheme, host and port only. The delivery log keeps the whole URL, not the process log.

The libraries that make requests for us (aiohttp, httpx, urllib3, the Twilio SDK, aiosmtplib
…) narrate each one below warning with its URL and headers; :func:`configure_logging` keeps
them at warning and above (:data:`QUIET_LIBRARY_LOGGERS`), whatever LOG_LEVEL says.

Objects that are not JSON (a settings object, an exception) are logged as their ``repr``
after the same redaction, never rendered unredacted.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog

if TYPE_CHECKING:
    from shared.config import Settings

REDACTED = "[redacted]"

#: Keys whose values are never logged. Matched case-insensitively anywhere in the key.
SECRET_KEY_PATTERN = re.compile(
    r"pass(word)?|secret|token|authorization|api[_-]?key|auth[_-]?token|cookie|credential", re.IGNORECASE
)
#: Credentials inside strings, whatever their key. Group 1 (when present) is kept.
SECRET_VALUE_PATTERN = re.compile(
    r"""(authorization["']?\s*[:=]\s*["']?)[^"'\r\n,}]+"""  # a whole header value, scheme included
    r"|(\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+"
    r"|whsec_[A-Za-z0-9+/=_-]+"
    r"|\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"  # a JWT: base64url of '{"'
    r"|(://[^/\s:@]*:)[^@\s/]+(?=@)"  # a URL's password
    r"""|((?:pass(?:word)?|secret|token|api[_-]?key|auth[_-]?token|signature)["']?\s*[:=]\s*["']?)"""
    r"""[^\s"'&,;}]+""",
    re.IGNORECASE,
)
#: Shorter configured values are left to the patterns: redacting a short word everywhere
#: would mangle ordinary text.
MIN_KNOWN_SECRET_CHARS = 8

#: An http(s) or ws(s) URL: its origin (group 1) is kept, its path and query (group 2) are not.
HTTP_URL_PATTERN = re.compile(
    r"""\b((?:https?|wss?)://[^/\s?#'"<>]+)([/?#][^\s'"<>]*)?""",
    re.IGNORECASE,
)

#: Loggers of the libraries that talk to the outside world for us; each narrates every
#: request below warning, URL and headers included (the Twilio SDK, httpx and urllib3 at
#: INFO). Kept at warning and above whatever LOG_LEVEL says.
QUIET_LIBRARY_LOGGERS = (
    "pika",
    "aiormq",
    "aiohttp",
    "httpx",
    "httpcore",
    "urllib3",
    "requests",
    "twilio",
    "aiosmtplib",
)

#: Keys left as they are: structlog's bookkeeping for stdlib records, and what it turns
#: into text later (an exception, a stack), redacted once it is text.
_NOT_YET_TEXT = frozenset({"_record", "_from_structlog", "exc_info", "stack_info"})

_secret_values: set[str] = set()
_known_secrets: re.Pattern[str] | None = None


def _hide(match: re.Match[str]) -> str:
    kept = next((group for group in match.groups() if group), "")
    return kept + REDACTED


def redact_text(text: str) -> str:
    """``text`` with every credential this module recognises replaced by ``[redacted]``."""
    if _known_secrets is not None:
        text = _known_secrets.sub(REDACTED, text)
    return SECRET_VALUE_PATTERN.sub(_hide, text)


def redact_url_paths(text: str) -> str:
    """``text`` with each http(s) URL cut to its scheme, host and port."""
    return HTTP_URL_PATTERN.sub(_keep_origin, text)


def _keep_origin(match: re.Match[str]) -> str:
    rest = match.group(2)
    if not rest or rest == "/":
        return match.group(0)
    return f"{match.group(1)}/{REDACTED}"


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (REDACTED if SECRET_KEY_PATTERN.search(str(k)) else _redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    if isinstance(value, str):
        return redact_url_paths(redact_text(value))
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact_url_paths(redact_text(repr(value)))


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key in _NOT_YET_TEXT:
            continue
        if SECRET_KEY_PATTERN.search(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact(event_dict[key])
    return event_dict


def secret_values(settings: Settings) -> list[str]:
    """This process's own secrets, as :func:`configure_logging` takes them."""
    values = [
        *settings.api_keys,
        settings.user_token_secret,
        settings.email_password,
        settings.twilio_auth_token,
        settings.webhook_secret,
        *settings.webhooks.encryption_keys,
    ]
    for url in (
        settings.database_url,
        settings.migration_database_url,
        settings.broker_url,
        settings.redis_url,
    ):
        if url:
            values.append(urlsplit(url).password)
    return [v for v in values if v]


def remember_secrets(values: Iterable[str]) -> None:
    """Redact these literal values from every log line from now on (with those before)."""
    global _known_secrets
    _secret_values.update(v for v in values if len(v) >= MIN_KNOWN_SECRET_CHARS)
    # Longest first, so a secret containing another is hidden whole.
    ordered = sorted(_secret_values, key=len, reverse=True)
    _known_secrets = re.compile("|".join(map(re.escape, ordered))) if ordered else None


_configured = False


def configure_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """Route structlog and the standard library (Dramatiq, pika, uvicorn) to JSON on stderr,
    redacting ``secrets`` (see :func:`secret_values`) besides what the patterns find."""
    global _configured
    remember_secrets(secrets)
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    structlog.configure(
        processors=[*shared_processors, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,  # again: tracebacks and exception messages are text only now
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in QUIET_LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    _configured = True


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
