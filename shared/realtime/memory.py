"""The in-process hub: publishing feeds this process's streams directly.

The embedded default runs the gateway and the workers in one process, so one process-wide
instance connects the in-app worker's publishes to the gateway's streams.
"""

from __future__ import annotations

from shared.realtime.base import Hub, InboxEvent


class MemoryHub(Hub):
    def publish(self, event: InboxEvent) -> None:
        self.streams.deliver(event)

    async def start(self) -> None:
        pass  # publishing already feeds the streams

    async def stop(self) -> None:
        pass

    def close(self) -> None:
        pass
