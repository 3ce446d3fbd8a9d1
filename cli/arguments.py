"""Argument types of the command line: each turns a bad value into argparse's usage error
(one line, exit code 2) rather than an exception from deep inside a command."""

from __future__ import annotations

import argparse
import json
from typing import Any

from shared.channels import Channel
from shared.events.queue import EVENTS_QUEUE


def port_number(raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {raw!r}") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port must be between 1 and 65535, not {port}")
    return port


def positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def channel(raw: str) -> Channel:
    try:
        return Channel.parse(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def worker_queue(raw: str) -> str:
    """A channel's queue name, or the events queue."""
    if raw.strip().lower() == EVENTS_QUEUE:
        return EVENTS_QUEUE
    return channel(raw).queue_name


def json_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg} at character {exc.pos + 1})") from None


def json_object(raw: str) -> dict[str, Any]:
    value = json_value(raw)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"amount\": 50}'")
    return value
