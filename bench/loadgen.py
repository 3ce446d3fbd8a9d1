"""A lean HTTP/1.1 load generator on raw asyncio streams, so the client's own overhead stays
small next to the gateway it measures (httpx costs more per request than the gateway does)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Connection:
    """One keep-alive connection issuing GET requests one after another."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def get(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        lines = [f"GET {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length)
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def closed_loop(
    host: str,
    port: int,
    concurrency: int,
    total: int,
    request: Callable[[int], tuple[str, dict[str, str]]],
) -> tuple[list[float], float, int]:
    """Send ``total`` requests over ``concurrency`` connections, each sending its next request
    when the previous answer arrives. Returns per-request latencies (seconds), wall time and
    the number of non-200 answers."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))

    async def worker() -> None:
        nonlocal errors
        connection = Connection(host, port)
        await connection.open()
        try:
            for n in counter:
                path, headers = request(n)
                started = time.perf_counter()
                status, _ = await connection.get(path, headers)
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    errors += 1
        finally:
            connection.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - began, errors


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
