"""What changed between two views of a job, and the message clients get for it."""

from __future__ import annotations

import json
import struct
from typing import Any, NamedTuple

from store.job_view import JobStatus, JobView


def event_kind(previous: JobView | None, current: JobView) -> str | None:
    """The change from ``previous`` to ``current`` as an event name, or None when nothing changed."""
    if previous is not None and _signature(previous) == _signature(current):
        return None
    if _waiting(current) and current.retry is not None:
        if previous is None or not _waiting(previous) or previous.retry != current.retry:
            return "retrying"
    if previous is None or previous.status != current.status:
        return current.status.value
    if current.progress is not None and current.progress != previous.progress:
        return "progress"
    return current.status.value


def _waiting(view: JobView) -> bool:
    return view.status in (JobStatus.queued, JobStatus.deferred)


def _signature(view: JobView) -> tuple[Any, ...]:
    # A retry note written while the try is still running is news only once the job waits again.
    retry = view.retry if _waiting(view) else None
    return (view.status, view.progress, retry, view.tries, view.error, view.result is not None)


class Event(NamedTuple):
    """One change as every subscriber receives it: encoded once, however many sockets send it."""

    kind: str
    status: str
    text: str  # the JSON message: the job's view (as GET /jobs/{id} gives it) plus "event"
    # The same as an ASGI send message, made once and shared by every socket (nothing on the way to the
    # server changes a websocket.send message; only http.response.start gets headers added).
    asgi: dict[str, Any]
    frame: bytes  # and as a WebSocket frame, for sockets the hub writes to directly


def message(kind: str, view: JobView) -> Event:
    """The message for ``view`` after the change ``kind``."""
    body = {"event": kind, **view.model_dump(mode="json")}
    text = json.dumps(body, separators=(",", ":"))
    return Event(kind, view.status.value, text, {"type": "websocket.send", "text": text}, text_frame(text))


def text_frame(text: str) -> bytes:
    """``text`` as one final, unmasked text frame (RFC 6455 5.2), as a server sends it."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x81, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x81, 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 127, n)
    return head + payload
