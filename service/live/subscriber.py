"""One live client's feed: sent at once from the hub's fan-out while the client keeps up, held (bounded) when not.

Why sends start in the fan-out loop: the first design gave every socket a task waiting on its own queue,
so each change woke 1,000 tasks at 1,000 clients, and each wake resumed a coroutine some 25 frames deep
(the ASGI middleware stack) only to make one write. A send to a socket whose transport accepts the bytes
finishes without ever suspending, so the fan-out steps the send coroutine itself: no task, no queue, no
wake-up. Where the server offers it (``service.live.wsprotocol``), the change's frame, encoded once, is
written straight to the socket instead, skipping the ASGI send path.

A send that does suspend (the client reads slowly, so the transport paused writing) is handed to a task
that finishes it; what comes meanwhile waits in a buffer of at most ``MAX_HELD`` messages, oldest
dropped first, so a slow client costs bounded memory and resumes at the latest state.
"""

from __future__ import annotations

import asyncio
import contextlib
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator, MutableMapping
from typing import Any, Protocol

from service.live.events import Event
from store.job_view import TERMINAL, JobView

MAX_HELD = 64
# The ASGI extension of service.live.wsprotocol: scope["extensions"][EXTENSION]["write"](frame) -> bool.
EXTENSION = "ifcflow.websocket.frame"
FrameWriter = Callable[[bytes], bool]
_TERMINAL = frozenset(s.value for s in TERMINAL)
# Tasks that finish a close begun in the fan-out: referenced until done so they are not collected.
_closing: set[asyncio.Task[None]] = set()


class Sink(Protocol):
    """Where a pushed feed goes: a Starlette WebSocket."""

    @property
    def scope(self) -> MutableMapping[str, Any]: ...

    async def send(self, message: MutableMapping[str, Any]) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class Subscriber:
    """A client's feed. Pushed to a ``Sink`` once attached; or pulled from ``queue`` (SSE, workflow sockets)."""

    __slots__ = (
        "_busy",
        "_close_on_terminal",
        "_ended",
        "_held",
        "_queue",
        "_sink",
        "_write",
        "dropped",
        "job_id",
        "operations",
        "statuses",
    )

    def __init__(
        self, job_id: str | None, operations: set[str] | None = None, statuses: set[str] | None = None
    ) -> None:
        self.job_id = job_id
        self.operations = operations
        self.statuses = statuses
        self.dropped = 0
        self._sink: Sink | None = None
        self._write: FrameWriter | None = None
        self._close_on_terminal = False
        # Made only when needed: most clients keep up, and 5,000 idle sockets should cost little.
        self._held: deque[Event] | None = None
        self._busy: asyncio.Task[None] | None = None  # a send that suspended, then what was held behind it
        self._queue: asyncio.Queue[Event | None] | None = None
        self._ended = False  # the terminal message went out, the client left, or a send failed

    def wants(self, view: JobView) -> bool:
        if self.operations and view.operation not in self.operations:
            return False
        return not self.statuses or view.status.value in self.statuses

    @property
    def queue(self) -> asyncio.Queue[Event | None]:
        """The feed for a reader that pulls; from first use on, every message goes here (None: the end)."""
        if self._queue is None:
            self._queue = asyncio.Queue(maxsize=MAX_HELD)
            while self._held:
                self._queue.put_nowait(self._held.popleft())
        return self._queue

    def offer(self, item: Event | None) -> None:
        """A new message (None: the feed ends). Called by the hub's fan-out, for every subscriber in turn."""
        if self._queue is not None:
            if self._queue.full():
                self._queue.get_nowait()
                self.dropped += 1
            self._queue.put_nowait(item)
        elif item is None or self._ended:
            return
        elif self._sink is None or self._busy is not None:
            self._hold(item)
        else:
            self._push(item)

    def attach(self, sink: Sink, *, close_on_terminal: bool) -> None:
        """Push from now on (the snapshot has been sent): first what was held, in order."""
        self._sink = sink
        offered = sink.scope.get("extensions", {}).get(EXTENSION)
        self._write = offered["write"] if offered else None
        self._close_on_terminal = close_on_terminal
        while self._held and self._busy is None and not self._ended:
            self._push(self._held.popleft())

    def detach(self) -> None:
        """The client is gone: send nothing more, and stop a send that waits for it."""
        self._ended = True
        self._held = None
        if self._busy is not None:
            self._busy.cancel()

    def _hold(self, item: Event) -> None:
        if self._held is None:
            self._held = deque(maxlen=MAX_HELD)
        elif len(self._held) == MAX_HELD:
            self.dropped += 1  # the deque drops the oldest itself
        self._held.append(item)

    def _push(self, item: Event) -> None:
        if self._write is not None and self._write(item.frame):
            self._sent(item)
            return
        assert self._sink is not None
        send = self._sink.send(item.asgi)  # not send_text: one coroutine and one dict less per socket
        try:
            waiting = send.send(None)
        except StopIteration:
            self._sent(item)
            return
        except Exception:  # the client is gone (WebSocketDisconnect, a closed socket): its reader ends the feed
            self._ended = True
            return
        self._busy = asyncio.create_task(self._finish(send, waiting, item))

    async def _finish(self, send: Coroutine[Any, Any, None], waiting: Any, item: Event) -> None:
        try:
            await _resume(send, waiting)
            self._sent(item)
            while self._held and not self._ended:
                item = self._held.popleft()
                assert self._sink is not None
                await self._sink.send(item.asgi)
                self._sent(item)
        except Exception:
            self._ended = True
        finally:
            self._busy = None

    def _sent(self, item: Event) -> None:
        if self._close_on_terminal and item.status in _TERMINAL:
            # The job has ended: close the socket (its reader then sees the close and the endpoint returns).
            self._ended = True
            self._held = None
            assert self._sink is not None
            start(self._sink.close())


def start(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` now, as far as it goes without suspending; a task finishes it if it does suspend."""
    try:
        waiting = coro.send(None)
    except StopIteration:
        return
    except Exception:
        return  # a close of a socket that is already gone
    task = asyncio.create_task(_quietly(coro, waiting))
    _closing.add(task)
    task.add_done_callback(_closing.discard)


async def _quietly(coro: Coroutine[Any, Any, None], waiting: Any) -> None:
    with contextlib.suppress(Exception):
        await _resume(coro, waiting)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, None], waiting: Any) -> Generator[Any, Any, None]:
    """Go on with a coroutine stepped once by hand that suspended on ``waiting``: what it yields is passed
    to the running task and what the task sends or throws back is passed to it, exactly as ``await coro``
    would have done had it been awaited from the start (this is ``yield from`` for a started coroutine)."""
    while True:
        try:
            received = yield waiting
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # CancelledError included: the coroutine sees it where it waits
            try:
                waiting = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                waiting = coro.send(received)
            except StopIteration:
                return
