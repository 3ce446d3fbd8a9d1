"""Fast local peers for the benchmarks, each in its own process so it never competes with the
process it measures for the GIL.

``python -m bench.peers http --port P [--delay-ms D] [--fail-first]`` is a minimal HTTP/1.1
server on asyncio's protocol layer (keep-alive, Content-Length bodies; nothing the webhook
provider, the Twilio SDK, Apprise or wrk send needs more). It answers webhook POSTs with 200,
Twilio ``Messages.json`` POSTs with 201 and a message resource, ``GET /_stats`` with its
counters and ``POST /_reset`` by zeroing them. ``--delay-ms`` holds every answer that long
(a slow receiver); ``--fail-first`` answers 503 to the first request of every ``webhook-id``
and records when its retry arrives.

``python -m bench.peers smtp --port P`` is an aiosmtpd server whose handler accepts every
message without parsing it.

Both print ``ready`` on stdout once they listen.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import threading
import time
from typing import Any

#: Largest request head we accept before hanging up (the peers only meet local clients).
MAX_HEAD_BYTES = 64 * 1024

TWILIO_PATH_SUFFIX = b"/Messages.json"


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.failed_once: set[str] = set()
        #: webhook-id → arrival time (epoch seconds) of the request after the 503.
        self.retry_arrivals: dict[str, float] = {}

    def document(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "max_in_flight": self.max_in_flight,
            "retry_arrivals": self.retry_arrivals,
        }


def _response(status: int, reason: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (
        status,
        reason.encode(),
        content_type,
        len(body),
    )
    return head + body


OK = _response(200, "OK", b'{"ok":true}')
UNAVAILABLE = _response(503, "Service Unavailable", b'{"error":"try again"}')


def _twilio_created() -> bytes:
    sid = "SM" + secrets.token_hex(16)
    return _response(201, "Created", b'{"sid":"%s","status":"queued"}' % sid.encode())


class HttpPeer(asyncio.Protocol):
    def __init__(self, stats: Stats, delay_s: float, fail_first: bool) -> None:
        self.stats = stats
        self.delay_s = delay_s
        self.fail_first = fail_first
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD_BYTES and self.transport is not None:
                    self.transport.close()
                return
            head = bytes(self.buffer[:end]).split(b"\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0"))
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            method, _, rest = head[0].partition(b" ")
            path = rest.partition(b" ")[0]
            self.respond(method, path, headers)

    def respond(self, method: bytes, path: bytes, headers: dict[bytes, bytes]) -> None:
        stats = self.stats
        if path == b"/_stats":
            self.write(_response(200, "OK", json.dumps(stats.document()).encode()))
            return
        if path == b"/_reset":
            stats.reset()
            self.write(OK)
            return
        stats.requests += 1
        answer = _twilio_created() if path.endswith(TWILIO_PATH_SUFFIX) else OK
        webhook_id = headers.get(b"webhook-id")
        if self.fail_first and webhook_id is not None:
            key = webhook_id.decode()
            if key not in stats.failed_once:
                stats.failed_once.add(key)
                answer = UNAVAILABLE
            elif key not in stats.retry_arrivals:
                stats.retry_arrivals[key] = time.time()
        if self.delay_s <= 0:
            self.write(answer)
            return
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        asyncio.get_running_loop().call_later(self.delay_s, self.finish_delayed, answer)

    def finish_delayed(self, answer: bytes) -> None:
        self.stats.in_flight -= 1
        self.write(answer)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


async def serve_http(port: int, delay_ms: int, fail_first: bool) -> None:
    stats = Stats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HttpPeer(stats, delay_ms / 1000, fail_first), "127.0.0.1", port, backlog=4096
    )
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def serve_smtp(port: int) -> None:
    from aiosmtpd.controller import Controller

    class Accept:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    controller = Controller(Accept(), hostname="127.0.0.1", port=port, server_hostname="smtp-bench.test")
    controller.start()
    print("ready", flush=True)
    threading.Event().wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.peers")
    parser.add_argument("kind", choices=["http", "smtp"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=int, default=0)
    parser.add_argument("--fail-first", action="store_true")
    args = parser.parse_args(argv)
    if args.kind == "smtp":
        serve_smtp(args.port)
    else:
        asyncio.run(serve_http(args.port, args.delay_ms, args.fail_first))
    return 0


if __name__ == "__main__":
    sys.exit(main())
