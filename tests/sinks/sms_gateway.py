"""A generic JSON SMS gateway on 127.0.0.1, the peer of ``workers.providers.http_sms``.

It checks what such a gateway checks (the bearer token, a JSON body with ``to``, ``from``
and ``body``), keeps one message per ``Idempotency-Key`` as gateways that honour the header
do (a repeat gets the first answer and is not sent again), and can be told to fail.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.sinks.faults import take_next
from tests.sinks.http_server import QuietServer, ServerThread


@dataclass(frozen=True)
class GatewayRequest:
    id: str
    to: str
    sender: str
    body: str
    reference: str | None
    idempotency_key: str | None


@dataclass
class _Fault:
    status: int
    headers: dict[str, str]
    remaining: int | None


class _Handler(BaseHTTPRequestHandler):
    server: QuietServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, document: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        sink: SmsGateway = self.server.owner
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/v1/messages":
            self._answer(404, {"error": "not found"})
            return
        if self.headers.get("Authorization") != f"Bearer {sink.token}":
            sink.unauthorized += 1
            self._answer(401, {"error": "invalid token"})
            return
        if sink.delay:
            self.server.stopping.wait(sink.delay)
        fault = sink._take_fault()
        if fault is not None:
            self._answer(fault.status, {"error": "refused by test"}, fault.headers)
            return
        try:
            document = json.loads(raw)
        except ValueError:
            self._answer(400, {"error": "the body is not JSON"})
            return
        if self.headers.get_content_type() != "application/json" or not all(
            isinstance(document.get(k), str) and document[k] for k in ("to", "from", "body")
        ):
            self._answer(400, {"error": "to, from and body are required"})
            return
        status, answer = sink._accept(document, self.headers.get("Idempotency-Key"))
        self._answer(status, answer)


class SmsGateway:
    """Use as a context manager or call start()/stop()."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.unauthorized = 0
        #: Seconds every request waits before its answer.
        self.delay = 0.0
        self._lock = threading.Lock()
        self._requests: list[GatewayRequest] = []
        self._by_key: dict[str, str] = {}
        self._faults: list[_Fault] = []
        self._thread: ServerThread | None = None

    def start(self) -> SmsGateway:
        self._thread = ServerThread(QuietServer(_Handler, self))
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()

    def __enter__(self) -> SmsGateway:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._thread is not None
        return f"{self._thread.base_url}/v1/messages"

    @property
    def requests(self) -> list[GatewayRequest]:
        with self._lock:
            return list(self._requests)

    def fail_next(self, status: int, *, times: int | None = 1, headers: dict[str, str] | None = None) -> None:
        """Answer the next ``times`` authorized requests (None: all) with ``status``."""
        with self._lock:
            self._faults.append(_Fault(status, headers or {}, times))

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            return take_next(self._faults)

    def _accept(self, document: dict[str, Any], key: str | None) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if key is not None and key in self._by_key:
                return 200, {"id": self._by_key[key], "status": "queued", "repeat": True}
            message_id = "gw_" + secrets.token_hex(8)
            reference = document.get("reference")
            self._requests.append(
                GatewayRequest(
                    message_id,
                    document["to"],
                    document["from"],
                    document["body"],
                    reference if isinstance(reference, str) else None,
                    key,
                )
            )
            if key is not None:
                self._by_key[key] = message_id
            return 201, {"id": message_id, "status": "queued"}
