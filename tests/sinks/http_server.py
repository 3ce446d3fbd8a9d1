"""A threaded HTTP server on 127.0.0.1 that shuts down cleanly, shared by the HTTP sinks.

Handler threads are joined on stop (no daemon threads left behind), a request that is made to
wait (slow-receiver tests) wakes up at stop instead of holding shutdown, and a client that
hung up early (a timeout, a capped read) is not reported as a server error.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class QuietServer(ThreadingHTTPServer):
    # Joined in server_close(), so no handler thread outlives the sink.
    daemon_threads = False
    block_on_close = True
    # socketserver listens with a backlog of 5: more clients connecting at once than that have
    # their SYN dropped and retried a second later, which no test means to measure.
    request_queue_size = 128

    def __init__(self, handler: type[BaseHTTPRequestHandler], owner: Any) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.owner = owner
        #: Set at stop: requests sleeping on purpose wake up and finish.
        self.stopping = threading.Event()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that give up early (timeouts, capped reads) are the point of some tests.
        pass


class ServerThread:
    """Runs ``serve_forever`` in a thread; ``stop`` shuts it down and closes every socket."""

    def __init__(self, server: QuietServer) -> None:
        self.server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.stopping.set()
        self.server.shutdown()
        self._thread.join()
        self.server.server_close()


class HttpSink:
    """A sink or protocol peer served by a :class:`ServerThread`: ``start``/``stop``, a
    context manager, and ``base_url``. A subclass names its request ``handler`` (which reads
    the sink as ``self.server.owner``) and may add to ``start`` or ``stop``."""

    handler: type[BaseHTTPRequestHandler]
    _runner: ServerThread | None = None

    def start(self) -> Self:
        self._runner = ServerThread(QuietServer(self.handler, self))
        self._runner.start()
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self._runner.stop()
            self._runner = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._runner is not None, "start it first"
        return self._runner.base_url
