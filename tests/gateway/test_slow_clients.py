"""Slow and idle clients against the real ``kai-messaging gateway`` process, over real
sockets on loopback: a client sending its headers a byte a second is answered 408 and
disconnected once GATEWAY_HEADER_TIMEOUT has passed, a body that trickles is answered 408
(and nothing enqueued), oversized headers are refused, and ordinary clients are served all
the while."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import func, select

from shared.config import Settings
from shared.db.models import NotificationLog
from shared.db.rls import system_scope
from tests.conftest import SERVER_KEY
from tests.gateway.server import GatewayProcess
from tests.waiting import wait_until

#: The deadlines the gateway under test runs with, in seconds.
HEADER_TIMEOUT_S = 2
BODY_TIMEOUT_S = 2
#: A slow client sends one byte per this many seconds.
BYTE_EVERY_S = 1.0
#: Slow clients held open at once while ordinary clients are served.
SLOW_CLIENTS = 50

SMS = b'{"to": "+14155550100", "message": "Your code is 123456"}'


def request_head(port: int, body_length: int) -> bytes:
    return (
        f"POST /api/messages/sms HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {SERVER_KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {body_length}\r\n\r\n"
    ).encode()


@pytest.fixture(scope="module")
def gateway(base_env: dict[str, str]) -> Iterator[GatewayProcess]:
    env = {
        **base_env,
        "GATEWAY_HEADER_TIMEOUT": str(HEADER_TIMEOUT_S * 1000),
        "GATEWAY_BODY_TIMEOUT": str(BODY_TIMEOUT_S * 1000),
        "RATE_LIMIT_ENABLED": "false",
    }
    with GatewayProcess(env) as process:
        yield process


def rows(settings: Settings) -> int:
    with system_scope(settings.database_url) as session:
        return int(session.scalar(select(func.count()).select_from(NotificationLog)) or 0)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def trickle(sock: socket.socket, data: bytes) -> tuple[int, bytes]:
    """Send ``data`` a byte every BYTE_EVERY_S until the server answers or closes; how many
    bytes went out, and what came back up to the close."""
    sock.settimeout(BYTE_EVERY_S)
    for sent, byte in enumerate(data, start=1):
        try:
            sock.sendall(bytes([byte]))
            first = sock.recv(65536)
        except TimeoutError:
            continue  # nothing from the server yet: the next byte
        except OSError:
            return sent, b""
        return sent, first + read_to_close(sock)
    raise AssertionError(f"the server still waited after all {len(data)} bytes")


def read_to_close(sock: socket.socket, within_s: float = 10) -> bytes:
    """What the server sends until it closes the connection (which it must within ``within_s``)."""
    sock.settimeout(within_s)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass  # closed with a reset: closed all the same
    return received


def test_headers_sent_a_byte_a_second_are_cut_off_with_408(gateway: GatewayProcess) -> None:
    """Given a client sending a request's headers one byte a second, then after about
    GATEWAY_HEADER_TIMEOUT (long before its headers are complete) it is answered 408 in
    the JSON error shape and disconnected."""
    head = request_head(gateway.port, len(SMS))
    with connect(gateway.port) as sock:
        sent, answer = trickle(sock, head)

    assert sent <= HEADER_TIMEOUT_S / BYTE_EVERY_S + 3 < len(head)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"code":"request_timeout"' in answer and b"connection: close" in answer.lower()


def test_a_body_that_trickles_is_answered_408_and_nothing_is_enqueued(
    gateway: GatewayProcess, settings: Settings
) -> None:
    """Given complete headers and then a body sent a byte a second, then after about
    GATEWAY_BODY_TIMEOUT the request is answered 408 request_timeout in the JSON error shape
    with Connection: close, the connection is closed, and no message is stored."""
    with connect(gateway.port) as sock:
        sock.sendall(request_head(gateway.port, len(SMS)))
        sent, answer = trickle(sock, SMS)

    assert sent <= BODY_TIMEOUT_S / BYTE_EVERY_S + 3 < len(SMS)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"code":"request_timeout"' in answer and b"connection: close" in answer.lower()
    assert rows(settings) == 0


def test_ordinary_clients_are_served_while_slow_ones_are_cut_off(gateway: GatewayProcess) -> None:
    """Given SLOW_CLIENTS connections, half idle and half holding half-sent headers, then an
    ordinary client's sends and reads are served meanwhile, and every slow connection is
    closed by the server within its deadline (plus the keep-alive timeout for idle ones)."""
    head = request_head(gateway.port, len(SMS))
    slow = [connect(gateway.port) for _ in range(SLOW_CLIENTS)]
    try:
        for n, sock in enumerate(slow):
            if n % 2:
                sock.sendall(head[:20])
            sock.setblocking(False)
        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            served = [
                client.post("/api/messages/sms", content=SMS, headers=_sms_headers()).status_code
                for _ in range(5)
            ]
            served.append(client.get("/healthz").status_code)

        def all_closed() -> bool:
            return all(_closed_by_server(sock) for sock in slow)

        wait_until(all_closed, timeout=HEADER_TIMEOUT_S + 10, message="slow connections are still open")
    finally:
        for sock in slow:
            sock.close()

    assert served == [202] * 5 + [200]


def test_oversized_headers_are_refused(gateway: GatewayProcess) -> None:
    """Headers over GATEWAY_MAX_HEADER_BYTES (64 KiB) are answered 400 and the connection
    closed, whatever their pace."""
    with connect(gateway.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 70_000 + b"\r\n\r\n")
        answer = read_to_close(sock)

    assert answer.startswith(b"HTTP/1.1 400 ")


def _sms_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {SERVER_KEY}", "Content-Type": "application/json"}


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        while chunk := sock.recv(65536):
            del chunk  # a 408 before the close
        return True
    except BlockingIOError:
        return False  # still open, nothing to read
    except OSError:
        return True  # reset
