"""A minimal Server-Sent Events reader on raw asyncio streams (chunked HTTP/1.1), light
enough to hold thousands of streams from one process."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any


@dataclass
class Frame:
    kind: str
    data: Any
    id: str | None


class SseStream:
    def __init__(self, host: str, port: int, token: str) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.status = 0
        self._buffer = b""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        request = (
            "GET /api/notifications/stream HTTP/1.1\r\n"
            f"Host: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {self.token}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        )
        self.writer.write(request.encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])

    async def _chunk(self) -> bytes:
        assert self.reader is not None
        size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
        data = await self.reader.readexactly(size + 2)
        if size == 0:
            raise EOFError("stream ended")
        return data[:-2]

    async def next_frame(self) -> Frame:
        """The next event (comments and the retry hint are skipped)."""
        while True:
            while b"\n\n" not in self._buffer:
                self._buffer += await self._chunk()
            raw, self._buffer = self._buffer.split(b"\n\n", 1)
            kind, data, ident = "message", None, None
            for line in raw.decode().split("\n"):
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data = json.loads(line[5:])
                elif line.startswith("id:"):
                    ident = line[3:].strip()
            if data is not None:
                return Frame(kind, data, ident)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
