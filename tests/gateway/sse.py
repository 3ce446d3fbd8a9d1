"""A Server-Sent Events client for tests: reads a stream on a thread and keeps every event."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

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
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=None))
        self._response: httpx.Response | None = None
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
        if self._response is not None:
            self._response.close()
        self._client.close()
        self._thread.join(10)

    def _read(self) -> None:
        try:
            with self._client.stream(
                "GET", self.url, headers={"Accept": "text/event-stream", **self.headers}, params=self.params
            ) as response:
                self._response = response
                self.status = response.status_code
                if response.status_code != 200:
                    self.body = response.read().decode()
                    return
                kind, data, ident = "message", [], None
                for line in response.iter_lines():
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
        except (httpx.HTTPError, RuntimeError, ValueError, OSError):
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
