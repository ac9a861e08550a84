"""Job status and control: read, cancel or abort, requeue."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from service.deps import ApiKeyDep, RedisDep, SettingsDep
from service.job_control import cancel, requeue
from service.job_view import TERMINAL, JobView, read_job
from settings import DEFAULT_QUEUE

router = APIRouter(prefix="/jobs", tags=["jobs"])

JobId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_:-]{1,80}$", description="id returned by a submit")]
# How long DELETE waits for a running job's worker to confirm the abort before answering.
_ABORT_WAIT_S = 3.0


async def _get(redis: RedisDep, job_id: str) -> JobView:
    view = await read_job(redis, job_id)
    if view is None:
        raise HTTPException(404, f"job {job_id} not found")
    return view


@router.get("/{job_id}", response_model=JobView)
async def get_job(job_id: JobId, redis: RedisDep, _: ApiKeyDep) -> JobView:
    """Status, progress, result or error of a job."""
    return await _get(redis, job_id)


@router.get("/{job_id}/status", response_model=JobView)
async def get_job_status(job_id: JobId, redis: RedisDep, _: ApiKeyDep) -> JobView:
    """The same as ``GET /jobs/{id}``, at the path the RQ system's clients poll."""
    return await _get(redis, job_id)


@router.delete("/{job_id}", response_model=JobView, status_code=202)
async def cancel_job(job_id: JobId, redis: RedisDep, settings: SettingsDep, _: ApiKeyDep) -> JobView:
    """Cancel a queued or deferred job, or abort a running one."""
    view = await _get(redis, job_id)
    if view.status in TERMINAL:
        raise HTTPException(409, f"job {job_id} already {view.status.value}")
    outcome = await cancel(redis, settings, job_id, view.status, view.queue or DEFAULT_QUEUE)
    if outcome == "aborting":
        deadline = asyncio.get_running_loop().time() + _ABORT_WAIT_S
        while asyncio.get_running_loop().time() < deadline:
            view = await _get(redis, job_id)
            if view.status in TERMINAL:
                break
            await asyncio.sleep(0.1)
        return view
    return await _get(redis, job_id)


@router.post("/{job_id}/requeue", response_model=JobView, status_code=202)
async def requeue_job(job_id: JobId, redis: RedisDep, settings: SettingsDep, _: ApiKeyDep) -> JobView:
    """Run a failed or aborted job again with its original arguments, under the same id."""
    view = await _get(redis, job_id)
    if not await requeue(redis, settings, job_id):
        raise HTTPException(409, f"job {job_id} is {view.status.value}: only failed or aborted jobs can be requeued")
    return await _get(redis, job_id)
