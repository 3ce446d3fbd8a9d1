"""A local stand-in for Microsoft Teams' inbound webhooks, of both kinds.

``new_webhook`` gives a URL shaped like one of the two ways Teams takes messages from
outside: a Power Automate Workflows URL (``/workflows/<id>/triggers/manual/paths/invoke?…&sig=
<secret>``, answering 202 Accepted with no body) or a legacy connector incoming webhook
(``/webhookb2/<ids>/IncomingWebhook/<id>/<id>``, answering 200 with the body ``1``). An
unknown path answers 404, a Workflows URL with the wrong ``sig`` 401.

A POST is checked as Teams checks it: the body at most 28 KB (413 otherwise), then a
``message`` with exactly one attachment of content type
``application/vnd.microsoft.card.adaptive`` whose content is an Adaptive Card of a version
Teams renders (1.0 to 1.5) made of element and action types it knows, each with its required
fields. A refused card gets 400 and the reason (Workflows: a JSON error; connectors: text).

Faults answer the next requests before they are looked at: any status with a body and
headers (``fail_next``), 429 with Retry-After (``rate_limit_next``), and the connectors'
200 whose body is an error text naming the status Teams answered behind them
(``error_in_ok_next``). A removed webhook answers 404 (or 410).
"""

from __future__ import annotations

import json
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.sinks.faults import take_next
from tests.sinks.http_server import HttpSink, QuietServer

ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
CARD_VERSIONS = frozenset({"1.0", "1.1", "1.2", "1.3", "1.4", "1.5"})
ELEMENT_TYPES = frozenset({"TextBlock", "FactSet", "ColumnSet", "Column", "Container", "Image", "ActionSet"})
ACTION_TYPES = frozenset({"Action.OpenUrl", "Action.ShowCard", "Action.ToggleVisibility"})
#: Teams refuses messages over 28 KB.
MAX_MESSAGE_BYTES = 28 * 1024

WORKFLOWS = "workflows"
CONNECTOR = "connector"


@dataclass
class _Fault:
    status: int
    body: bytes
    headers: dict[str, str]
    remaining: int | None  # None: forever


@dataclass
class _Webhook:
    id: str
    style: str
    #: The Workflows URL's ``sig``; None for connectors (the path is the secret).
    sig: str | None
    removed_with: int | None = None


@dataclass(frozen=True)
class TeamsPost:
    """One message the peer accepted."""

    webhook: str
    style: str
    message: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def card(self) -> dict[str, Any]:
        content: dict[str, Any] = self.message["attachments"][0]["content"]
        return content


class Refused(Exception):
    """Why Teams would refuse the message (answered 400)."""


def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise Refused(reason)


def check_card(card: Any, where: str, *, nested: bool = False) -> None:
    """An Adaptive Card as Teams renders it; a card inside Action.ShowCard needs no version."""
    _require(isinstance(card, dict), f"{where} must be an object")
    _require(card.get("type") == "AdaptiveCard", f'{where}.type must be "AdaptiveCard"')
    if not nested:
        _require(card.get("version") in CARD_VERSIONS, f"{where}.version must be one of 1.0 to 1.5")
    body = card.get("body", [])
    _require(isinstance(body, list), f"{where}.body must be a list")
    for n, element in enumerate(body):
        check_element(element, f"{where}.body[{n}]")
    actions = card.get("actions", [])
    _require(isinstance(actions, list), f"{where}.actions must be a list")
    for n, action in enumerate(actions):
        check_action(action, f"{where}.actions[{n}]")


def _elements(items: Any, where: str) -> None:
    _require(isinstance(items, list), f"{where} must be a list")
    for n, element in enumerate(items):
        check_element(element, f"{where}[{n}]")


def check_element(element: Any, where: str) -> None:
    _require(isinstance(element, dict), f"{where} must be an object")
    kind = element.get("type")
    _require(kind in ELEMENT_TYPES, f"{where}.type {kind!r} is not an element type Teams knows")
    if kind == "TextBlock":
        _require(isinstance(element.get("text"), str), f"{where}.text is required")
    elif kind == "FactSet":
        facts = element.get("facts")
        _require(isinstance(facts, list), f"{where}.facts must be a list")
        for n, fact in enumerate(facts):
            _require(
                isinstance(fact, dict)
                and isinstance(fact.get("title"), str)
                and isinstance(fact.get("value"), str),
                f"{where}.facts[{n}] needs a title and a value",
            )
    elif kind == "ColumnSet":
        columns = element.get("columns", [])
        _require(isinstance(columns, list), f"{where}.columns must be a list")
        for n, column in enumerate(columns):
            _require(
                isinstance(column, dict) and column.get("type", "Column") == "Column",
                f"{where}.columns[{n}] must be a Column",
            )
            _elements(column.get("items", []), f"{where}.columns[{n}].items")
    elif kind == "Column":
        _elements(element.get("items", []), f"{where}.items")
    elif kind == "Container":
        _elements(element.get("items"), f"{where}.items")
    elif kind == "Image":
        _require(isinstance(element.get("url"), str), f"{where}.url is required")
    elif kind == "ActionSet":
        actions = element.get("actions")
        _require(isinstance(actions, list), f"{where}.actions must be a list")
        for n, action in enumerate(actions):
            check_action(action, f"{where}.actions[{n}]")


def check_action(action: Any, where: str) -> None:
    _require(isinstance(action, dict), f"{where} must be an object")
    kind = action.get("type")
    _require(kind in ACTION_TYPES, f"{where}.type {kind!r} is not an action a webhook card may have")
    if kind == "Action.OpenUrl":
        _require(isinstance(action.get("url"), str), f"{where}.url is required")
    elif kind == "Action.ShowCard":
        check_card(action.get("card"), f"{where}.card", nested=True)
    elif kind == "Action.ToggleVisibility":
        _require(isinstance(action.get("targetElements"), list), f"{where}.targetElements must be a list")


def check_message(message: Any) -> dict[str, Any]:
    """The message when Teams would post it; Refused saying why not."""
    _require(isinstance(message, dict), "the body must be a JSON object")
    _require(message.get("type") == "message", 'type must be "message"')
    attachments = message.get("attachments")
    _require(isinstance(attachments, list) and len(attachments) == 1, "exactly one attachment is required")
    attachment = attachments[0]
    _require(isinstance(attachment, dict), "attachments[0] must be an object")
    _require(
        attachment.get("contentType") == ADAPTIVE_CARD, f"attachments[0].contentType must be {ADAPTIVE_CARD}"
    )
    check_card(attachment.get("content"), "attachments[0].content")
    checked: dict[str, Any] = message
    return checked


class _Handler(BaseHTTPRequestHandler):
    server: QuietServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        peer: TeamsPeer = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        peer._count()
        path, _, query = self.path.partition("?")
        hook = peer._webhook_at(path)
        if hook is None:
            self._answer(404, b"Not Found", {"Content-Type": "text/plain"})
            return
        if hook.sig is not None and parse_qs(query).get("sig") != [hook.sig]:
            error = {"error": {"code": "DirectApiInvalidAuthorizationSignature", "message": "bad sig"}}
            self._answer(401, json.dumps(error).encode(), {"Content-Type": "application/json"})
            return
        if hook.removed_with is not None:
            self._answer(hook.removed_with, b"Webhook not found", {"Content-Type": "text/plain"})
            return
        fault = peer._take_fault()
        if fault is not None:
            self._answer(fault.status, fault.body, {"Content-Type": "text/plain", **fault.headers})
            return
        if not peer._wait_delay():
            self.close_connection = True  # reset or stopped while waiting: hang up
            return
        if len(raw) > MAX_MESSAGE_BYTES:
            self._answer(413, b"Payload too large: the message is over 28 KB", {"Content-Type": "text/plain"})
            return
        try:
            message = check_message(json.loads(raw))
        except (ValueError, Refused) as exc:
            self._refuse(hook, str(exc) if isinstance(exc, Refused) else "the body is not JSON")
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        peer._record(TeamsPost(hook.id, hook.style, message, headers))
        if hook.style == WORKFLOWS:
            self._answer(202)
        else:
            self._answer(200, b"1", {"Content-Type": "text/plain"})

    def _refuse(self, hook: _Webhook, reason: str) -> None:
        if hook.style == WORKFLOWS:
            error = {"error": {"code": "InvalidRequestContent", "message": reason}}
            self._answer(400, json.dumps(error).encode(), {"Content-Type": "application/json"})
        else:
            body = f"Bad payload received by generic incoming webhook: {reason}".encode()
            self._answer(400, body, {"Content-Type": "text/plain"})


class TeamsPeer(HttpSink):
    """Teams' inbound webhooks on 127.0.0.1. Use as a context manager or call start()/stop()."""

    handler = _Handler

    def __init__(self) -> None:
        #: Seconds each request waits before it is answered (timeout tests).
        self.delay = 0.0
        #: Every request that reached the peer, refused or not.
        self.request_count = 0
        self._cond = threading.Condition()
        self._posts: list[TeamsPost] = []
        self._faults: list[_Fault] = []
        self._webhooks: dict[str, _Webhook] = {}
        #: Set to wake requests waiting out ``delay`` (at reset and stop).
        self._wake = threading.Event()

    def stop(self) -> None:
        self._wake.set()  # requests waiting out a delay end now
        super().stop()

    def reset(self) -> None:
        """Forget posts, faults, counters and the delay, and hang up on requests still waiting
        out a delay, so that one running peer serves test after test."""
        with self._cond:
            self._posts.clear()
            self._faults.clear()
            self.request_count = 0
            self.delay = 0.0
            self._wake.set()
            self._wake = threading.Event()

    def new_webhook(self, style: str = WORKFLOWS) -> str:
        """A new webhook of ``style`` (``workflows`` or ``connector``); its URL."""
        if style == WORKFLOWS:
            hook = _Webhook(secrets.token_hex(16), style, secrets.token_urlsafe(32))
            path = f"/workflows/{hook.id}/triggers/manual/paths/invoke"
            query = f"?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={hook.sig}"
        elif style == CONNECTOR:
            hook = _Webhook(secrets.token_hex(16), style, None)
            path = f"/webhookb2/{uuid.uuid4()}@{uuid.uuid4()}/IncomingWebhook/{hook.id}/{uuid.uuid4()}"
            query = ""
        else:
            raise ValueError(f"unknown webhook style {style!r}")
        with self._cond:
            self._webhooks[path] = hook
        return self.base_url + path + query

    def remove_webhook(self, url: str, status: int = 404) -> None:
        """The webhook (or its flow, or its channel) was deleted: it answers ``status``."""
        with self._cond:
            self._webhooks[urlsplit(url).path].removed_with = status

    def fail_next(
        self,
        status: int,
        body: str = "",
        *,
        headers: dict[str, str] | None = None,
        times: int | None = 1,
    ) -> None:
        """Answer the next ``times`` requests (None: all) with ``status`` and ``body``."""
        with self._cond:
            self._faults.append(_Fault(status, body.encode(), dict(headers or {}), times))

    def rate_limit_next(self, retry_after: int = 30, *, times: int | None = 1) -> None:
        self.fail_next(429, "Too Many Requests", headers={"Retry-After": str(retry_after)}, times=times)

    def error_in_ok_next(self, named: int = 429, *, times: int | None = 1) -> None:
        """A connector's 200 whose body says Teams behind it answered ``named``."""
        context = f"tcid=0,server=msgapi-production-eus-azsc2-4-170,cv={secrets.token_urlsafe(16)}.0"
        body = (
            "Webhook message delivery failed with error: Microsoft Teams endpoint returned "
            f"HTTP error {named} with ContextId {context}"
        )
        self.fail_next(200, body, times=times)

    @property
    def posts(self) -> list[TeamsPost]:
        with self._cond:
            return list(self._posts)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[TeamsPost]:
        """Block until ``count`` messages were accepted; AssertionError after ``timeout``."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._posts) >= count, timeout=timeout):
                raise AssertionError(f"Teams peer got {len(self._posts)} of {count} messages in {timeout}s")
            return list(self._posts)

    # -- used by the handler

    def _webhook_at(self, path: str) -> _Webhook | None:
        """The webhook at ``path`` (a Workflows URL's ``sig`` is checked by the handler)."""
        with self._cond:
            return self._webhooks.get(path)

    def _count(self) -> None:
        with self._cond:
            self.request_count += 1

    def _wait_delay(self) -> bool:
        """Wait out ``delay``; False when the peer was reset or stopped meanwhile."""
        with self._cond:
            delay, wake = self.delay, self._wake
        return not delay or not wake.wait(delay)

    def _take_fault(self) -> _Fault | None:
        with self._cond:
            return take_next(self._faults)

    def _record(self, post: TeamsPost) -> None:
        with self._cond:
            self._posts.append(post)
            self._cond.notify_all()
