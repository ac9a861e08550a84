"""Putting a new job on the queue: its id, when it is due, and the one Redis call that makes it."""

from __future__ import annotations

import hashlib
from typing import Any

import structlog
from pydantic import BaseModel
from redis.asyncio import Redis

from access.grants import DEFAULT_PROJECT, Caller
from access.scope import client_paths, sees_whole_store
from contracts.files import PathRefused
from contracts.operations import Operation
from contracts.paths import suffix_of
from service.batching import CreateBatcher
from service.schemas import JobOptions
from store import job_store
from store.job_store import NewJob, new_job_id, now_ms
from store.job_view import JobStatus

# Longest Idempotency-Key header accepted; longer ones are refused with 422 before anything is made.
IDEMPOTENCY_KEY_MAX = 255


def job_id_for(idempotency_key: str | None, caller_id: str) -> str:
    """A new random id, or one derived from the key, scoped to the caller so callers never collide."""
    if not idempotency_key:
        return new_job_id()
    digest = hashlib.sha256(f"{caller_id}\0{idempotency_key}".encode()).hexdigest()
    return f"idem-{digest[:32]}"


# What an earlier clash run is read from (ifcservices/tools/clash_revisions.py).
PREVIOUS_SUFFIXES = (".json", ".bcf")


def same_files(caller: Caller, project: str | None) -> bool:
    """Whether the files of ``project``'s jobs are inside what ``caller`` names paths in: its own
    project's, or the whole store for an admin of ``default`` (``access.scope.for_caller``)."""
    return (project or DEFAULT_PROJECT) == caller.project or sees_whole_store(caller)


async def resolve_previous(redis: Redis, body: BaseModel, caller: Caller) -> None:
    """A clash request's ``previous`` that names a job becomes that job's result file, for the service
    (which has no Redis) to read; ``PathRefused`` names ``previous`` when the job is unknown, not an
    ifcclash job, not complete, or wrote no .json or .bcf. A file path is left for the path checks.
    Another project's job is unknown (no existence leak); its result is named as the caller names
    paths (relative to its project), since the path checks that follow map it to its store key."""
    previous = getattr(body, "previous", None)
    if not previous:
        return
    view = await job_store.get(redis, previous)
    if view is not None and not same_files(caller, view.project):
        view = None
    if view is None:
        if suffix_of(previous).lower() in PREVIOUS_SUFFIXES:
            return
        raise PathRefused(("previous",), f"no job {previous!r} is known (never made, or expired) and it names no "
                                         ".json or .bcf clash result")
    if view.operation != Operation.ifcclash:
        raise PathRefused(("previous",), f"job {previous!r} is a {view.operation} job, not an ifcclash job")
    if view.status is not JobStatus.complete:
        raise PathRefused(("previous",), f"job {previous!r} is {view.status.value}, not complete")
    outputs = [str(f) for f in (view.result or {}).get("output_files") or []]
    found = next((f for f in outputs if suffix_of(f).lower() in PREVIOUS_SUFFIXES), None)
    if found is None:
        raise PathRefused(("previous",), f"job {previous!r} wrote no .json or .bcf clash result")
    # only clash requests have it (getattr above)
    body.previous = client_paths(found, caller.project)  # type: ignore[attr-defined]


def due_ms(options: JobOptions) -> int | None:
    """When a deferred job is due (epoch ms), or None to run now."""
    if options.defer_until is not None:
        return int(options.defer_until.timestamp() * 1000)
    if options.defer_by:
        return now_ms() + int(options.defer_by * 1000)
    return None


async def submit(
    creates: CreateBatcher,
    op: Operation,
    request: dict[str, Any],
    options: JobOptions,
    *,
    job_id: str,
    request_id: str | None,
    fresh_id: bool,
    project: str = DEFAULT_PROJECT,
) -> bool:
    """Record and enqueue a job under ``job_id`` in one atomic step.

    True when made; False when that id exists already for the same request (a replay: nothing is
    enqueued). ``store.job_store.IdempotencyConflict`` when it exists for another request. ``fresh_id``
    says the id was just drawn by ``new_job_id``, so no earlier job can hold it. ``project`` is the
    submitting caller's: the job is that project's (isolation, fair share).
    """
    meta = {"callback_url": options.callback_url} if options.callback_url else {}
    if options.cache:
        meta["cache"] = "1"
    # Said once, on the request's own log line (http.request) rather than a line of its own.
    structlog.contextvars.bind_contextvars(job_id=job_id, operation=op.value, priority=options.priority)
    job = NewJob(
        op, request, job_id, request_id=request_id, priority=options.priority, due_ms=due_ms(options), meta=meta,
        fresh_id=fresh_id, project=project,
    )
    return await creates.create(job)
