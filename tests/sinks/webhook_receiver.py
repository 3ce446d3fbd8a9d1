"""A webhook endpoint on 127.0.0.1 that verifies Standard Webhooks signatures.

Every POST is recorded with its headers, parsed JSON and whether its signature verified with
the receiver's secret (through the ``standardwebhooks`` library, as a customer's receiver
would). Tests can queue answers (``respond_next``: status, headers such as Retry-After, a
body of any size), slow every request down (``delay``) and count deliveries per
``webhook-id`` to detect duplicates.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from standardwebhooks import Webhook

from tests.sinks.http_server import HttpSink, QuietServer

#: An answer status meaning: close the connection without answering.
DROP = 0


@dataclass(frozen=True)
class Delivery:
    """One POST the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    verified: bool
    error: str | None = None
    #: time.monotonic() when the request arrived.
    received_at: float = 0.0


@dataclass
class _Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    remaining: int | None = 1  # None: forever
    #: Only requests whose parsed JSON body this accepts get this answer (None: any request).
    match: Callable[[Any], bool] | None = None


class _Handler(BaseHTTPRequestHandler):
    server: QuietServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def do_POST(self) -> None:
        receiver: WebhookReceiver = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            # The sender went away mid-request (e.g. a killed worker): like any HTTP server,
            # treat it as a dropped connection, not as a delivery.
            receiver.incomplete += 1
            self.close_connection = True
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        parsed = receiver._record(self.path, headers, body)
        if receiver.delay:
            self.server.stopping.wait(receiver.delay)
        answer = receiver._next_answer(parsed)
        if answer.status == DROP:
            self.close_connection = True  # hang up without an answer
            return
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)


class WebhookReceiver(HttpSink):
    """Use as a context manager or call start()/stop(). Answers 200 unless told otherwise."""

    handler = _Handler

    def __init__(self, secret: str | None = None) -> None:
        self._verifier = None if secret is None else Webhook(secret)
        #: Seconds every request waits before it is answered (slow-receiver tests).
        self.delay = 0.0
        #: Requests whose body never fully arrived (the sender died or hung up mid-request).
        self.incomplete = 0
        #: Requests answered with a programmed answer (``respond_next``/``drop_next``).
        self.programmed = 0
        self._cond = threading.Condition()
        self._deliveries: list[Delivery] = []
        self._answers: list[_Answer] = []
        self._ids: Counter[str] = Counter()

    @property
    def url(self) -> str:
        return self.base_url + "/hooks"

    def set_secret(self, secret: str) -> None:
        """Verify with this secret from now on (an endpoint's secret is known only once the
        endpoint, which needs this receiver's URL, has been created)."""
        with self._cond:
            self._verifier = Webhook(secret)

    def respond_next(
        self,
        status: int,
        times: int | None = 1,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        match: Callable[[Any], bool] | None = None,
    ) -> None:
        """Answer the next ``times`` requests (None: all of them) like this; with ``match``,
        only requests whose parsed JSON body it accepts."""
        with self._cond:
            self._answers.append(_Answer(status, dict(headers or {}), body, times, match))

    def clear_answers(self) -> None:
        """Forget queued answers: answer 200 from now on."""
        with self._cond:
            self._answers.clear()

    def drop_next(self, times: int | None = 1) -> None:
        """Hang up on the next ``times`` requests, after reading them, without answering."""
        self.respond_next(DROP, times)

    @property
    def deliveries(self) -> list[Delivery]:
        with self._cond:
            return list(self._deliveries)

    def count(self, webhook_id: str) -> int:
        """How many requests carried this ``webhook-id`` (more than one: a retry or duplicate)."""
        with self._cond:
            return self._ids[webhook_id]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Delivery]:
        """Block until ``count`` requests arrived; AssertionError after ``timeout`` seconds."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._deliveries) >= count, timeout=timeout):
                got = len(self._deliveries)
                raise AssertionError(f"receiver got {got} of {count} webhooks in {timeout}s")
            return list(self._deliveries)

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> Any:
        error: str | None = None
        arrived = time.monotonic()
        try:
            if self._verifier is None:
                raise ValueError("the receiver has no secret to verify with")
            parsed = self._verifier.verify(body, headers)
            verified = True
        except Exception as exc:  # WebhookVerificationError, or ValueError on a malformed header
            verified, error = False, f"{type(exc).__name__}: {exc}"
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        with self._cond:
            self._deliveries.append(Delivery(path, headers, body, parsed, verified, error, arrived))
            self._ids[headers.get("webhook-id", "")] += 1
            self._cond.notify_all()
        return parsed

    def _next_answer(self, parsed: Any) -> _Answer:
        with self._cond:
            for answer in self._answers:
                if answer.remaining == 0 or (answer.match is not None and not answer.match(parsed)):
                    continue
                if answer.remaining is not None:
                    answer.remaining -= 1
                self.programmed += 1
                return answer
        return _Answer(200, {"Content-Type": "application/json"}, b'{"ok":true}')
