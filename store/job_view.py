"""A job as clients see it, read from arq's keys and our job record in one or two round trips."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from arq import ArqRedis
from arq.jobs import deserialize_result
from pydantic import BaseModel

from contracts.wire import ErrorInfo
from settings import DEFAULT_QUEUE
from store import keys
from store.serialization import JobError, deserialize


class JobStatus(StrEnum):
    queued = "queued"
    deferred = "deferred"
    in_progress = "in_progress"
    complete = "complete"
    failed = "failed"
    aborted = "aborted"


# The record is written just before arq's job key; for this long, a record alone means "being enqueued".
_ENQUEUE_GRACE_MS = 10_000

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


def _dt(ms: Any) -> datetime | None:
    if ms in (None, "", b""):
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


def _json(raw: str | None) -> Any:
    return json.loads(raw) if raw else None


async def read_meta(redis: ArqRedis, job_id: str) -> dict[str, str]:
    raw = await redis.hgetall(keys.job_meta(job_id))
    return {k.decode(): v.decode() for k, v in raw.items()}


async def read_job(redis: ArqRedis, job_id: str) -> JobView | None:
    """The job's current view, or None when Redis knows nothing of it."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.job_meta(job_id))
        pipe.get(keys.ARQ_RESULT + job_id)
        pipe.exists(keys.ARQ_IN_PROGRESS + job_id)
        pipe.get(keys.ARQ_JOB + job_id)
        pipe.get(keys.ARQ_RETRY + job_id)
        raw_meta, raw_result, running, raw_job, raw_try = await pipe.execute()
    meta = {k.decode(): v.decode() for k, v in raw_meta.items()}
    if not meta and raw_result is None and raw_job is None:
        return None
    view = JobView(
        job_id=job_id,
        operation=meta.get("operation"),
        status=JobStatus.queued,
        queue=meta.get("queue"),
        enqueued_at=_dt(meta.get("enqueued_at")),
        started_at=_dt(meta.get("started_at")),
        tries=int(meta.get("tries") or (raw_try or 0)),
        progress=Progress.model_validate(_json(meta.get("progress"))) if meta.get("progress") else None,
        retry=RetryNote.model_validate(_json(meta.get("retry"))) if meta.get("retry") else None,
        arguments=_json(meta.get("args")),
    )
    if raw_result is not None:
        _apply_result(view, raw_result)
    elif meta.get("cancelled_at"):
        view.status = JobStatus.aborted
        view.finished_at = _dt(meta["cancelled_at"])
        view.error = ErrorInfo(type="aborted", message="job cancelled before it started")
    elif running:
        view.status = JobStatus.in_progress
    elif raw_job is not None:
        score = await redis.zscore(view.queue or DEFAULT_QUEUE, job_id)
        if score is not None and score > time.time() * 1000:
            view.status = JobStatus.deferred
    elif int(meta.get("enqueued_at") or 0) < time.time() * 1000 - _ENQUEUE_GRACE_MS:
        # A record with no arq keys long after its submission: the job was lost with its queue.
        view.status = JobStatus.failed
        view.error = ErrorInfo(type="lost", message="job is no longer in Redis")
    return view


def _apply_result(view: JobView, raw: bytes) -> None:
    info = deserialize_result(raw, deserializer=deserialize)
    view.operation = view.operation or info.function
    view.enqueued_at = view.enqueued_at or info.enqueue_time
    view.started_at = info.start_time
    view.finished_at = info.finish_time
    view.tries = info.job_try
    view.progress = None if not info.success else Progress(percent=100, phase="done")
    view.retry = None
    if info.success:
        view.status = JobStatus.complete
        view.result = info.result if isinstance(info.result, dict) else {"value": info.result}
        return
    error = info.result.info if isinstance(info.result, JobError) else ErrorInfo(
        type="job_failed", message=str(info.result)
    )
    view.error = error
    view.status = JobStatus.aborted if error.type == "aborted" else JobStatus.failed


async def read_jobs(redis: ArqRedis, job_ids: list[str]) -> list[JobView]:
    """Views of many jobs at once; ids Redis no longer knows are left out."""
    views = await asyncio.gather(*(read_job(redis, j) for j in job_ids))
    return [v for v in views if v is not None]
