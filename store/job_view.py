"""A job as clients see it: made from its one record (``ifcflow:job:<id>``), nothing else."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel

from contracts.wire import ErrorInfo


class JobStatus(StrEnum):
    queued = "queued"
    deferred = "deferred"
    in_progress = "in_progress"
    complete = "complete"
    failed = "failed"
    aborted = "aborted"


TERMINAL = frozenset({JobStatus.complete, JobStatus.failed, JobStatus.aborted})


class Progress(BaseModel):
    percent: float
    phase: str = ""


class RetryNote(BaseModel):
    attempt: int
    reason: str
    next_try_at: datetime


class JobView(BaseModel):
    job_id: str
    operation: str | None
    status: JobStatus
    queue: str | None = None
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    tries: int = 0
    progress: Progress | None = None
    retry: RetryNote | None = None
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    arguments: dict[str, Any] | None = None
    # Whose job it is (None: a record made before projects, which belongs to "default").
    project: str | None = None


def _dt(ms: str | None) -> datetime | None:
    if not ms:
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


def _json(raw: str | None) -> Any:
    return orjson.loads(raw) if raw else None


def decode(raw: dict[bytes, bytes]) -> dict[str, str]:
    """A record as Redis returns it (bytes) as strings."""
    return {k.decode(): v.decode() for k, v in raw.items()}


def status_of(record: dict[str, str], now_ms: float | None = None) -> JobStatus:
    """The record's status; a wait whose due time has come reads as ``queued``."""
    status = JobStatus(record.get("status") or JobStatus.queued)
    if status in (JobStatus.queued, JobStatus.deferred):
        due = int(record.get("due_at") or 0)
        now = time.time() * 1000 if now_ms is None else now_ms
        return JobStatus.deferred if due > now else JobStatus.queued
    return status


def view_of(job_id: str, record: dict[str, str]) -> JobView | None:
    """The view of a decoded record; None for an empty one (no such job)."""
    if not record:
        return None
    error = _json(record.get("error"))
    result = _json(record.get("result"))
    return JobView(
        job_id=job_id,
        operation=record.get("operation"),
        status=status_of(record),
        queue=record.get("queue"),
        enqueued_at=_dt(record.get("enqueued_at")),
        started_at=_dt(record.get("started_at")),
        finished_at=_dt(record.get("finished_at")),
        # Runs that only found the service busy waited for capacity: they are not tries.
        tries=max(int(record.get("tries") or 0) - int(record.get("busy_tries") or 0), 0),
        progress=Progress.model_validate(_json(record["progress"])) if record.get("progress") else None,
        retry=RetryNote.model_validate(_json(record["retry"])) if record.get("retry") else None,
        result=result if isinstance(result, dict) or result is None else {"value": result},
        error=ErrorInfo.model_validate(error) if error else None,
        arguments=_json(record.get("args")),
        project=record.get("project") or None,
    )

