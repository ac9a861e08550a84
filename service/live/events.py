"""What changed between two views of a job, and the message clients get for it."""

from __future__ import annotations

import json
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


def message(kind: str, view: JobView) -> Event:
    """The message for ``view`` after the change ``kind``."""
    body = {"event": kind, **view.model_dump(mode="json")}
    return Event(kind, view.status.value, json.dumps(body, separators=(",", ":")))
