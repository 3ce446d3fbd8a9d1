"""Reading typed values from environment variables, with errors that name the variable.

One parser per type for every settings module (:mod:`shared.config`,
:mod:`shared.webhooks.settings`, :mod:`shared.ratelimit_settings`), so a value is read the
same way whichever module owns it.
"""

from __future__ import annotations

from collections.abc import Callable

from shared.errors import ConfigError


def parse_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def parse_int(name: str, raw: str, *, minimum: int = 0) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def parse_csv(raw: str) -> tuple[str, ...]:
    """Comma-separated items, blanks dropped."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def int_setting(get: Callable[[str], str | None], name: str, default: int, minimum: int = 0) -> int:
    """``name`` read with ``get`` (None when unset), or ``default`` when it is unset."""
    raw = get(name)
    return default if raw is None else parse_int(name, raw, minimum=minimum)
