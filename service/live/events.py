"""What changed between two views of a job, and the message clients get for it."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from access.grants import DEFAULT_PROJECT
from access.scope import client_paths
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
    """One change as every subscriber receives it: encoded once (twice for a job of a project other
    than ``default``: as the store names its files, and as its project does), however many sockets
    send it."""

    kind: str
    status: str
    text: str  # the JSON message: the job's view (as GET /jobs/{id} gives it an admin) plus "event"
    project: str  # the job's
    relative: str  # ``text`` with the job's files relative to its project (``text`` itself for default)

    def text_for(self, project: str) -> str:
        """The message as a caller of ``project`` is shown it (``service.routers.jobs.shown``)."""
        return self.relative if project == self.project else self.text


def _encoded(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"))


def message(kind: str, view: JobView) -> Event:
    """The message for ``view`` after the change ``kind``."""
    body = {"event": kind, **view.model_dump(mode="json")}
    text = _encoded(body)
    project = view.project or DEFAULT_PROJECT
    if project == DEFAULT_PROJECT:  # default's files are at the store's root: named alike either way
        return Event(kind, view.status.value, text, project, text)
    relative = {**body, "arguments": client_paths(body["arguments"], project),
                "result": client_paths(body["result"], project)}
    return Event(kind, view.status.value, text, project, _encoded(relative))
