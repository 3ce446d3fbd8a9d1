"""A peer that answers one byte at a time: the slowloris of the receiving side.

Each connection gets ``answer`` written a byte every ``interval`` seconds, after reading the
client's first bytes when ``read_first`` (HTTP: the request) or straight away (SMTP: the
greeting). Between two bytes the connection is never idle for long, so a client whose deadline
is per read waits for the whole answer; only one deadline for the whole attempt stops it. The
peer notes, per connection, whether the client hung up before the answer was complete.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass


@dataclass
class Connection:
    sent: int = 0
    #: The client closed the connection while the answer was still being written.
    abandoned: bool = False
    finished: bool = False


class DripServer:
    def __init__(self, answer: bytes, *, interval: float = 0.2, read_first: bool = True) -> None:
        self.answer = answer
        self.interval = interval
        self.read_first = read_first
        self.connections: list[Connection] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="drip-accept")

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def __enter__(self) -> DripServer:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._acceptor.join()
        for thread in self._threads:
            thread.join()
        self._listener.close()

    def in_flight(self) -> int:
        """Connections still being answered (neither finished nor abandoned)."""
        with self._lock:
            return sum(1 for c in self.connections if not (c.finished or c.abandoned))

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            state = Connection()
            with self._lock:
                self.connections.append(state)
            thread = threading.Thread(target=self._drip, args=(sock, state), name="drip-conn")
            self._threads.append(thread)
            thread.start()

    def _drip(self, sock: socket.socket, state: Connection) -> None:
        with sock:
            try:
                if self.read_first:
                    sock.settimeout(5)
                    sock.recv(65536)
                for byte in self.answer:
                    if self._stop.wait(self.interval):
                        return
                    sock.sendall(bytes([byte]))
                    state.sent += 1
                state.finished = True
                # Keep the connection open until the client is done with it.
                sock.settimeout(0.5)
                while not self._stop.is_set():
                    try:
                        if not sock.recv(65536):
                            return
                    except TimeoutError:
                        continue
            except OSError:
                if not state.finished:
                    state.abandoned = True
