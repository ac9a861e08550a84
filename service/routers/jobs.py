"""Job status and control: read, cancel or abort, requeue."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel

from access.audit import audit
from access.grants import DEFAULT_PROJECT, Caller, check_project
from access.quotas import check_submit
from access.scope import client_paths
from contracts.files import inside
from service.deps import ApiKeyDep, RedisDep, SettingsDep, StorageDep, SubmitKeyDep
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


def not_found(job_id: str) -> HTTPException:
    """The answer for an unknown job, and for another project's: the same, so nothing says it exists."""
    return HTTPException(404, f"job {job_id} not found")


def shown(view: JobView, caller: Caller) -> JobView:
    """``view`` as ``caller`` is shown it: its files named relative to the caller's project (the record
    holds full store keys; nothing changes for ``default``, whose files are at the store's root)."""
    if view.arguments is None and view.result is None:
        return view
    return view.model_copy(update={"arguments": client_paths(view.arguments, caller.project),
                                   "result": client_paths(view.result, caller.project)})


async def owned(redis: RedisDep, job_id: str, caller: Caller) -> JobView:
    """The job's view if ``caller`` may see it (its project's, or any for an admin); 404 otherwise."""
    view = await job_store.get(redis, job_id)
    if view is None or not caller.sees(view.project):
        raise not_found(job_id)
    return view


class JobPage(BaseModel):
    jobs: list[JobView]
    next_offset: int | None
    # Entries of the recent-jobs index (every project's): shown to admin keys only.
    indexed: int | None


_SCAN_LIMIT = 2000  # index entries one filtered listing may read before it answers with what it has


@router.get("", response_model=JobPage)
async def list_jobs(
    redis: RedisDep,
    caller: ApiKeyDep,
    status: Annotated[str | None, Query(max_length=200, description="comma-separated statuses")] = None,
    operation: Annotated[str | None, Query(max_length=500, description="comma-separated operations")] = None,
    project: Annotated[str | None, Query(max_length=63, description="admin keys: only this project's jobs")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=keys.RECENT_JOBS_MAX)] = 0,
) -> JobPage:
    """Recent jobs of the caller's project (an admin key: of every project, or of ``?project=``),
    newest first, from a bounded index (never a scan over all of Redis)."""
    if project is not None:
        try:
            check_project(project)
        except ValueError as exc:
            raise HTTPException(422, [{"loc": ["query", "project"], "msg": str(exc), "type": "value_error"}]) from None
    # A key that is not admin lists its own project only: asking for another finds nothing (no leak).
    wanted = project if caller.admin else caller.project
    if not caller.admin and project not in (None, caller.project):
        return JobPage(jobs=[], next_offset=None, indexed=0)
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
            if wanted is not None and (view.project or DEFAULT_PROJECT) != wanted:
                continue
            if operations and view.operation not in operations:
                continue
            found.append(shown(view, caller))
            if len(found) == limit:
                break
    return JobPage(jobs=found, next_offset=position if position < indexed else None,
                   indexed=indexed if caller.admin else None)


@router.get("/{job_id}", response_model=JobView)
async def get_job(job_id: JobId, redis: RedisDep, caller: ApiKeyDep) -> JobView:
    """Status, progress, result or error of a job (404 for another project's)."""
    return shown(await owned(redis, job_id, caller), caller)


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
async def get_job_status(job_id: JobId, redis: RedisDep, storage: StorageDep, caller: ApiKeyDep) -> SeedJobStatus:
    """The job as the RQ system answered it, for its clients (the n8n node polls here): RQ's status
    words (``finished``, ``failed``, ...), ``error`` a string, ``result`` as its workers returned it
    (``success``, ``output_path``, each operation's own keys). The same record as ``GET /jobs/{id}``."""
    view = await owned(redis, job_id, caller)
    report = None
    if view.status is JobStatus.complete and view.operation == "ifctester":
        # The whole store with the record's own (full) keys: the job is the caller's to see.
        report = await _html_report(storage, view)
    return seed_view(shown(view, caller), report)


@router.delete("/{job_id}", response_model=JobView, status_code=202)
async def cancel_job(
    job_id: JobId, redis: RedisDep, settings: SettingsDep, storage: StorageDep, caller: SubmitKeyDep
) -> JobView:
    """Cancel a queued or deferred job, or abort a running one (of the caller's project)."""
    view = await owned(redis, job_id, caller)
    if view.status in TERMINAL:
        raise HTTPException(409, f"job {job_id} already {view.status.value}")
    outcome = await job_store.cancel(redis, settings, job_id)
    if outcome in ("cancelled", "aborting"):
        audit(caller, "job.cancel", job_id=job_id, outcome=outcome)
    if outcome == "cancelled":
        await advance_if_step(redis, settings, storage, job_id)
    if outcome == "aborting":
        deadline = asyncio.get_running_loop().time() + _ABORT_WAIT_S
        while asyncio.get_running_loop().time() < deadline:
            view = await owned(redis, job_id, caller)
            if view.status in TERMINAL:
                break
            await asyncio.sleep(0.1)
        return shown(view, caller)
    return shown(await owned(redis, job_id, caller), caller)


@router.post("/{job_id}/requeue", response_model=JobView, status_code=202)
async def requeue_job(job_id: JobId, redis: RedisDep, settings: SettingsDep, caller: SubmitKeyDep) -> JobView:
    """Run a failed or aborted job again with its original arguments, under the same id."""
    await owned(redis, job_id, caller)  # another project's job is not there for this caller
    await check_submit(redis, settings, caller)
    outcome = await job_store.requeue(redis, settings, job_id)
    if outcome == "gone":
        raise not_found(job_id)
    if outcome != "requeued":
        raise HTTPException(409, f"job {job_id} is {outcome}: only failed or aborted jobs can be requeued")
    audit(caller, "job.requeue", job_id=job_id)
    return shown(await owned(redis, job_id, caller), caller)
