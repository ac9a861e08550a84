"""Aborting running jobs at once, without arq's abort polling.

The gateway records an abort in arq's abort set and publishes the job id (``store.job_store.cancel``); the worker
running the job cancels the operation itself (not arq's task), so arq stores an "aborted" failure instead of running
the job again. With arq's own abort check off, an idle worker's poll is a single Redis command,
which is what lets workers poll every few tens of milliseconds and start jobs that fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import structlog

from contracts.wire import ErrorInfo
from jobs.context import WorkerContext
from store import job_store
from store.serialization import JobError

log = structlog.get_logger("jobs.aborts")
T = TypeVar("T")


async def abortable(ctx: WorkerContext, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` so that an abort request for this job ends it with an "aborted" error."""
    job_id = ctx["job_id"]
    task = asyncio.create_task(work)
    ctx["abortable"][job_id] = task
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if job_id in ctx["aborted"] and not (current and current.cancelling()):
            raise JobError(ErrorInfo(type="aborted", message="job aborted")) from None
        raise
    finally:
        ctx["abortable"].pop(job_id, None)
        ctx["aborted"].discard(job_id)


def abort(ctx: WorkerContext, job_id: str) -> bool:
    task = ctx["abortable"].get(job_id)
    if task is None or task.done():
        return False
    ctx["aborted"].add(job_id)
    task.cancel()
    log.info("job.abort_requested", job_id=job_id)
    return True


async def sweep(ctx: WorkerContext) -> None:
    """Abort this worker's running jobs named in arq's abort set (a request whose message was missed)."""
    if not ctx["abortable"]:
        return
    # Only this worker's running jobs are looked up, however many requests the set holds.
    for job_id in await job_store.abort_requests(ctx["redis"], list(ctx["abortable"])):
        abort(ctx, job_id)
