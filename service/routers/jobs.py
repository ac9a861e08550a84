"""Job status and control: read, cancel or abort, requeue."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel

from contracts.files import inside
from service.deps import ApiKeyDep, RedisDep, SettingsDep, StorageDep
from service.routers.workflows import advance_if_step
from storage import NotFound, Storage
from store import job_store, keys
from store.job_view import TERMINAL, JobStatus, JobView
from store.seed_view import SeedJobStatus, seed_view

router = APIRouter(prefix="/jobs", tags=["jobs"])

JobId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_:-]{1,128}$", description="id returned by a submit")]
# How long DELETE waits for a running job's worker to confirm the abort before answering.
_ABORT_WAIT_S = 3.0
# Largest HTML test report put into a status answer (the RQ system's tester returned the whole text).
_REPORT_MAX_BYTES = 16 * 1024 * 1024


async def _get(redis: RedisDep, job_id: str) -> JobView:
    view = await job_store.get(redis, job_id)
    if view is None:
        raise HTTPException(404, f"job {job_id} not found")
    return view


class JobPage(BaseModel):
    jobs: list[JobView]
    next_offset: int | None
    indexed: int


_SCAN_LIMIT = 2000  # index entries one filtered listing may read before it answers with what it has


@router.get("", response_model=JobPage)
async def list_jobs(
    redis: RedisDep,
    _: ApiKeyDep,
    status: Annotated[str | None, Query(max_length=200, description="comma-separated statuses")] = None,
    operation: Annotated[str | None, Query(max_length=500, description="comma-separated operations")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=keys.RECENT_JOBS_MAX)] = 0,
) -> JobPage:
    """Recent jobs, newest first, from a bounded index (never a scan over all of Redis)."""
    statuses = {s.strip() for s in status.split(",")} if status else None
    if statuses and not statuses <= {s.value for s in JobStatus}:
        msg = f"use some of {', '.join(s.value for s in JobStatus)}"
        raise HTTPException(422, [{"loc": ["query", "status"], "msg": msg, "type": "value_error"}])
    operations = {o.strip() for o in operation.split(",")} if operation else None
    indexed = await redis.zcard(keys.RECENT_JOBS)
    found: list[JobView] = []
    position = offset  # index entries examined so far: where the next page starts
    while len(found) < limit and position < indexed and position - offset < _SCAN_LIMIT:
        ids = [raw.decode() for raw in await redis.zrevrange(keys.RECENT_JOBS, position, position + 199)]
        if not ids:
            break
        views = {v.job_id: v for v in await job_store.get_many(redis, ids)}
        for job_id in ids:
            position += 1
            view = views.get(job_id)
            if view is None or (statuses and view.status.value not in statuses):
                continue
            if operations and view.operation not in operations:
                continue
            found.append(view)
            if len(found) == limit:
                break
    return JobPage(jobs=found, next_offset=position if position < indexed else None, indexed=indexed)


@router.get("/{job_id}", response_model=JobView)
async def get_job(job_id: JobId, redis: RedisDep, _: ApiKeyDep) -> JobView:
    """Status, progress, result or error of a job."""
    return await _get(redis, job_id)


def _local_report(root: FilePath, rel: str) -> str | None:
    top = os.path.realpath(root)
    real = os.path.realpath(os.path.join(top, rel))
    try:
        if not inside(top, real) or os.path.getsize(real) > _REPORT_MAX_BYTES:
            return None
        return FilePath(real).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


async def _html_report(storage: Storage, view: JobView) -> str | None:
    """The text of a finished HTML test report (None for other jobs, or one gone or too large)."""
    args = view.arguments or {}
    files = (view.result or {}).get("output_files") or []
    if view.operation != "ifctester" or args.get("report_type") != "html" or not files:
        return None
    rel = str(files[0])
    if storage.local_root is not None:
        return await asyncio.to_thread(_local_report, storage.local_root, rel)
    found = await storage.stat(rel)
    if found is None or found.size > _REPORT_MAX_BYTES:
        return None
    try:
        data = b"".join([chunk async for chunk in storage.read(rel, found.version)])
    except NotFound:
        return None
    return data.decode("utf-8", errors="replace")


@router.get("/{job_id}/status", response_model=SeedJobStatus)
async def get_job_status(job_id: JobId, redis: RedisDep, storage: StorageDep, _: ApiKeyDep) -> SeedJobStatus:
    """The job as the RQ system answered it, for its clients (the n8n node polls here): RQ's status
    words (``finished``, ``failed``, ...), ``error`` a string, ``result`` as its workers returned it
    (``success``, ``output_path``, each operation's own keys). The same record as ``GET /jobs/{id}``."""
    view = await _get(redis, job_id)
    report = None
    if view.status is JobStatus.complete and view.operation == "ifctester":
        report = await _html_report(storage, view)
    return seed_view(view, report)


@router.delete("/{job_id}", response_model=JobView, status_code=202)
async def cancel_job(
    job_id: JobId, redis: RedisDep, settings: SettingsDep, storage: StorageDep, _: ApiKeyDep
) -> JobView:
    """Cancel a queued or deferred job, or abort a running one."""
    view = await _get(redis, job_id)
    if view.status in TERMINAL:
        raise HTTPException(409, f"job {job_id} already {view.status.value}")
    outcome = await job_store.cancel(redis, settings, job_id)
    if outcome == "cancelled":
        await advance_if_step(redis, settings, storage, job_id)
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
    outcome = await job_store.requeue(redis, settings, job_id)
    if outcome == "gone":
        raise HTTPException(404, f"job {job_id} not found")
    if outcome != "requeued":
        raise HTTPException(409, f"job {job_id} is {outcome}: only failed or aborted jobs can be requeued")
    return await _get(redis, job_id)
