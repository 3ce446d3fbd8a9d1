"""A Server-Sent Events client for tests: reads a stream on a thread and keeps every event."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlencode, urlsplit

from tests.waiting import wait_until


@dataclass
class Event:
    kind: str
    data: Any
    id: str | None = None


@dataclass
class SseClient:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    status: int | None = None
    body: str = ""
    ended: bool = False

    def __post_init__(self) -> None:
        # http.client rather than httpx: shutting the socket down from the test thread is the
        # one reliable way to end a blocking read on another thread.
        parts = urlsplit(self.url)
        self._connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        self._target = parts.path + (f"?{urlencode(self.params)}" if self.params else "")
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, name="sse-client", daemon=True)

    def __enter__(self) -> SseClient:
        self._thread.start()
        wait_until(lambda: self.status is not None or self.ended, timeout=10, message="stream did not answer")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        sock = self._connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed by the server
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)
        self._connection.close()

    def _read(self) -> None:
        try:
            self._connection.request(
                "GET", self._target, headers={"Accept": "text/event-stream", **self.headers}
            )
            response = self._connection.getresponse()
            if self._connection.sock is not None:
                self._connection.sock.settimeout(None)  # idle streams are quiet for a heartbeat
            self.status = response.status
            if response.status != 200:
                self.body = response.read().decode()
                return
            kind, data, ident = "message", [], None
            while True:
                raw = response.readline()
                if not raw:
                    return
                line = raw.decode().rstrip("\r\n")
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line.startswith("id:"):
                    ident = line[3:].strip()
                elif line == "" and data:
                    with self._lock:
                        self.events.append(Event(kind, json.loads("\n".join(data)), ident))
                    kind, data, ident = "message", [], None
        except (http.client.HTTPException, ValueError, OSError):
            pass  # closed from the test thread
        finally:
            self.ended = True

    def of(self, kind: str) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.kind == kind]

    def titles(self) -> list[str]:
        return [e.data["title"] for e in self.of("notification")]

    def last_count(self) -> int | None:
        counts = self.of("unread-count")
        return counts[-1].data["count"] if counts else None

    def wait_for_titles(self, *titles: str, timeout: float = 15) -> None:
        wait_until(
            lambda: set(titles) <= set(self.titles()),
            timeout=timeout,
            message=lambda: f"stream saw {self.titles()}, expected {titles}",
        )
