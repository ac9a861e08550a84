"""One live client's feed: a bounded queue the hub's fan-out fills, and (for a WebSocket) the task that empties it.

Why a bounded queue that drops the oldest: the fan-out must never wait for one client, and a client
that reads slowly must not make the gateway hold every change it missed. At most ``MAX_QUEUED``
messages wait per client; when more come, the oldest go first (counted in ``dropped``), so a slow
client costs bounded memory and, once it catches up, is at the latest state.

Why one task per socket: sending through Starlette's ``WebSocket.send_text`` waits while the client's
transport is full; that wait belongs to the socket's own task, not to the fan-out. The endpoint's task
reads the socket meanwhile, which is how a client that left is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from starlette.types import Message

from access.grants import DEFAULT_PROJECT
from service.live.events import Event
from store.job_view import TERMINAL, JobView

MAX_QUEUED = 64
_CLOSE_SEND_FAILED = 1011  # "internal error": the client may reconnect and read a new snapshot
_TERMINAL = frozenset(s.value for s in TERMINAL)


class Socket(Protocol):
    """What a pushed feed needs of a Starlette ``WebSocket`` (its public API only)."""

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...

    async def receive(self) -> Message: ...


class Subscriber:
    """A client's feed: filled by ``offer``; pulled from ``queue`` (SSE, workflow sockets) or sent to a
    WebSocket by ``serve``."""

    __slots__ = ("dropped", "job_id", "operations", "project", "queue", "relative", "statuses")

    def __init__(
        self, job_id: str | None, operations: set[str] | None = None, statuses: set[str] | None = None,
        project: str | None = None, relative: str = DEFAULT_PROJECT,
    ) -> None:
        self.job_id = job_id  # None: every job
        self.operations = operations
        self.statuses = statuses
        self.project = project  # the all-jobs stream: only this project's jobs (None: every project's)
        self.relative = relative  # the caller's project: its jobs' files are shown relative to it
        self.dropped = 0
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=MAX_QUEUED)

    def wants(self, view: JobView) -> bool:
        """Whether the all-jobs filters (project, operations, statuses) let ``view`` through."""
        if self.project is not None and (view.project or DEFAULT_PROJECT) != self.project:
            return False
        if self.operations and view.operation not in self.operations:
            return False
        return not self.statuses or view.status.value in self.statuses

    def offer(self, item: Event) -> None:
        """Queue a message without waiting; when the queue is full the oldest message makes room."""
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(item)

    def discard_queued(self) -> None:
        """Forget what is queued: called just before a snapshot is read, which is at least as new."""
        while not self.queue.empty():
            self.queue.get_nowait()

    async def serve(self, ws: Socket, *, close_on_terminal: bool) -> None:
        """Send the feed to ``ws`` until the client leaves; with ``close_on_terminal``, close the socket
        after the job's terminal message (the client's close reply then ends this too)."""
        sender = asyncio.create_task(self._send_all(ws, close_on_terminal))
        try:
            await _until_closed(ws)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _send_all(self, ws: Socket, close_on_terminal: bool) -> None:
        try:
            while True:
                item = await self.queue.get()
                await ws.send_text(item.text_for(self.relative))
                if close_on_terminal and item.status in _TERMINAL:
                    await ws.close()
                    return
        except Exception:
            # Mostly a client that is gone. Either way this socket gets nothing more: close it, so its
            # endpoint ends now rather than whenever the connection's loss is noticed.
            with contextlib.suppress(Exception):
                await ws.close(_CLOSE_SEND_FAILED)


async def _until_closed(ws: Socket) -> None:
    """Read until the socket ends: clients say nothing after authenticating, and reading is how a
    closed connection is noticed (a close sent by this side ends the read as well, once answered)."""
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass
