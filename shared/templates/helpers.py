"""The helpers templates may call, beside the block helpers ``if/unless/each/with``.

pybars calls a helper as ``helper(this, *args, **kwargs)``. Each one refuses a
:class:`~shared.templates.context.Missing` argument (except ``default``, whose purpose is to
replace it) so a misspelt variable fails the message instead of printing nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from shared.errors import RenderError
from shared.templates.context import Missing, MissingVariable

#: ``formatDate`` styles (strftime) when no explicit pattern is given.
DATE_STYLES = {
    "short": "%Y-%m-%d",
    "medium": "%d %b %Y",
    "long": "%d %B %Y",
    "datetime": "%Y-%m-%d %H:%M UTC",
    "iso": "iso",
}
#: Symbols for the currencies we print with a symbol; others print their code.
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}
#: Currencies without minor units.
ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "VND", "CLP", "ISK"})


def _present(value: Any) -> Any:
    if isinstance(value, Missing):
        raise MissingVariable(value.path)
    return value


def format_date(_this: Any, value: Any, style: Any = "medium", **_: Any) -> str:
    """``{{formatDate createdAt "long"}}``: an ISO 8601 string, a date or a Unix timestamp."""
    value = _present(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        moment: datetime | date = datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise RenderError(f"formatDate: {value!r} is not an ISO 8601 date") from None
    else:
        raise RenderError(f"formatDate: cannot format {type(value).__name__}")
    pattern = DATE_STYLES.get(str(style), str(style))
    if pattern == "iso":
        return moment.isoformat()
    if isinstance(moment, datetime) and moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(pattern)


def currency(_this: Any, amount: Any, code: Any = "USD", **_: Any) -> str:
    """``{{currency amount "EUR"}}`` → ``€12.50``; amounts are in major units."""
    amount = _present(amount)
    code = str(_present(code)).upper()
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise RenderError(f"currency: {amount!r} is not a number") from None
    places = 0 if code in ZERO_DECIMAL_CURRENCIES else 2
    text = f"{abs(value):,.{places}f}"
    sign = "-" if value < 0 else ""
    symbol = CURRENCY_SYMBOLS.get(code)
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {code}"


def pluralize(_this: Any, count: Any, singular: Any, plural: Any = None, **_: Any) -> str:
    """``{{pluralize count "item"}}`` → ``1 item`` / ``3 items``."""
    count = _present(count)
    try:
        number = float(count)
    except (TypeError, ValueError):
        raise RenderError(f"pluralize: {count!r} is not a number") from None
    word = str(singular) if number == 1 else str(plural if plural is not None else f"{singular}s")
    shown = int(number) if number == int(number) else number
    return f"{shown} {word}"


def default(_this: Any, value: Any, fallback: Any = "", **_: Any) -> Any:
    """``{{default nickname "there"}}``: the value, or the fallback when it is missing or empty."""
    if isinstance(value, Missing) or value is None or value == "":
        return fallback
    return value


HELPERS: dict[str, Callable[..., Any]] = {
    "formatDate": format_date,
    "currency": currency,
    "pluralize": pluralize,
    "default": default,
}
