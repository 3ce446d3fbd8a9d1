"""Structured JSON logging with secrets redacted.

Every log line is one JSON object. A processor replaces the value of any key that names a
secret (password, token, secret, authorization, api key …) before rendering, so a secret
passed to a logger by mistake never reaches the output.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"

#: Keys whose values are never logged. Matched case-insensitively anywhere in the key.
SECRET_KEY_PATTERN = re.compile(
    r"pass(word)?|secret|token|authorization|api[_-]?key|auth[_-]?token|cookie|credential", re.IGNORECASE
)
#: Values that look like credentials whatever their key ("Bearer …", "whsec_…").
SECRET_VALUE_PATTERN = re.compile(r"(Bearer\s+)\S+|whsec_[A-Za-z0-9+/=]+", re.IGNORECASE)


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (REDACTED if SECRET_KEY_PATTERN.search(str(k)) else _redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    if isinstance(value, str):
        return SECRET_VALUE_PATTERN.sub(lambda m: (m.group(1) or "") + REDACTED, value)
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if SECRET_KEY_PATTERN.search(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact(event_dict[key])
    return event_dict


_configured = False


def configure_logging(level: str = "INFO") -> None:
    """Route structlog and the standard library (Dramatiq, pika, uvicorn) to JSON on stderr."""
    global _configured
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
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # pika narrates every connection step at INFO.
    logging.getLogger("pika").setLevel(max(numeric, logging.WARNING))
    _configured = True


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
