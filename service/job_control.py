"""Putting jobs on the queue and taking them off: submit, cancel, requeue."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from arq import ArqRedis
from redis.exceptions import WatchError

from contracts import keys, stats
from contracts.operations import Operation
from service.job_view import JobStatus, read_job, read_meta
from settings import Settings

log = structlog.get_logger("service.jobs")

# Cancel a job only while no worker has claimed it: a worker claims by setting arq's in-progress
# key under WATCH, so checking that key and removing the job from the queue in one script is atomic.
_CANCEL_QUEUED = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 'running' end
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 'gone' end
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('HSET', KEYS[5], 'cancelled_at', ARGV[2])
redis.call('EXPIRE', KEYS[5], ARGV[3])
return 'cancelled'
"""


@dataclass(frozen=True, slots=True)
class Submitted:
    job_id: str
    created: bool  # False: an earlier request with the same Idempotency-Key made this job


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request."""


def job_id_for(idempotency_key: str | None, api_key: str) -> str:
    """A new random id, or one derived from the key, scoped to the caller so callers never collide."""
    if not idempotency_key:
        return uuid.uuid4().hex
    digest = hashlib.sha256(f"{api_key}\0{idempotency_key}".encode()).hexdigest()
    return f"idem-{digest[:32]}"


def _fingerprint(op: Operation, request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([op.value, request], sort_keys=True).encode()).hexdigest()


def _defer_ms(defer_until: datetime | None, defer_by: float | None) -> int:
    if defer_until is not None:
        return max(0, int((defer_until.timestamp() - time.time()) * 1000))
    return int((defer_by or 0) * 1000)


async def submit(
    redis: ArqRedis,
    settings: Settings,
    op: Operation,
    request: dict[str, Any],
    *,
    job_id: str,
    request_id: str | None,
    defer_until: datetime | None = None,
    defer_by: float | None = None,
) -> Submitted:
    """Write the job's record, then enqueue it under ``job_id``; a replayed id enqueues nothing."""
    meta_key = keys.job_meta(job_id)
    queue = settings.queue_for(op)
    fingerprint = _fingerprint(op, request)
    defer_ms = _defer_ms(defer_until, defer_by)
    # Outlives every try of the job; the worker shortens it to the result TTL when the job ends.
    ttl = defer_ms // 1000 + settings.timeout_for(op) * settings.max_tries + settings.result_ttl
    async with redis.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(meta_key)
            existing = await pipe.hget(meta_key, "fingerprint")
            if existing is not None:
                await pipe.unwatch()
                if existing.decode() != fingerprint:
                    raise IdempotencyConflict(job_id)
                return Submitted(job_id, created=False)
            pipe.multi()
            pipe.hset(
                meta_key,
                mapping={
                    "operation": op.value,
                    "queue": queue,
                    "request_id": request_id or "",
                    "args": json.dumps(request),
                    "fingerprint": fingerprint,
                    "enqueued_at": int(time.time() * 1000),
                },
            )
            pipe.expire(meta_key, ttl)
            stats.add_count(pipe, op.value, "enqueued")
            pipe.zadd(keys.RECENT_JOBS, {job_id: int(time.time() * 1000)})
            pipe.zremrangebyrank(keys.RECENT_JOBS, 0, -keys.RECENT_JOBS_MAX - 1)
            await pipe.execute()
        except WatchError:
            # A concurrent request with the same key won the race; it enqueues the job.
            return Submitted(job_id, created=False)
    await _enqueue(redis, op, request, job_id=job_id, queue=queue, request_id=request_id, defer_ms=defer_ms)
    log.info("job.enqueued", job_id=job_id, operation=op.value, queue=queue, defer_ms=defer_ms)
    return Submitted(job_id, created=True)


async def _enqueue(
    redis: ArqRedis,
    op: Operation,
    request: dict[str, Any],
    *,
    job_id: str,
    queue: str,
    request_id: str | None,
    defer_ms: int,
) -> None:
    await redis.enqueue_job(
        op.value,
        request=request,
        request_id=request_id,
        _job_id=job_id,
        _queue_name=queue,
        _defer_by=defer_ms / 1000 if defer_ms else None,
    )


async def cancel(redis: ArqRedis, settings: Settings, job_id: str, status: JobStatus, queue: str) -> str:
    """'cancelled' for a job that had not started, 'aborting' for a running one, or why neither."""
    if status in (JobStatus.queued, JobStatus.deferred):
        outcome = await redis.eval(
            _CANCEL_QUEUED,
            5,
            queue,
            keys.ARQ_IN_PROGRESS + job_id,
            keys.ARQ_JOB + job_id,
            keys.ARQ_RETRY + job_id,
            keys.job_meta(job_id),
            job_id,
            str(int(time.time() * 1000)),
            str(settings.result_ttl),
        )
        outcome = outcome.decode() if isinstance(outcome, bytes) else str(outcome)
        if outcome != "running":
            return outcome
    # Running: arq's abort set; the worker running it cancels the task within one poll.
    await redis.zadd(keys.ARQ_ABORT, {job_id: int(time.time() * 1000)})
    return "aborting"


async def requeue(redis: ArqRedis, settings: Settings, job_id: str) -> bool:
    """Run a failed or aborted job again under the same id, with its original arguments."""
    meta = await read_meta(redis, job_id)
    if not meta.get("args"):
        return False
    op = Operation(meta["operation"])
    view = await read_job(redis, job_id)
    if view is None or view.status not in (JobStatus.failed, JobStatus.aborted):
        return False
    queue = meta.get("queue") or settings.queue_for(op)
    async with redis.pipeline(transaction=True) as pipe:
        # arq refuses an id that still has a result, and would abort it at once if its id were left
        # in the abort set; clear both before enqueueing.
        pipe.delete(keys.ARQ_RESULT + job_id, keys.ARQ_RETRY + job_id)
        pipe.zrem(keys.ARQ_ABORT, job_id)
        pipe.hdel(keys.job_meta(job_id), "cancelled_at", "started_at", "progress", "retry", "tries")
        pipe.hset(keys.job_meta(job_id), "enqueued_at", str(int(time.time() * 1000)))
        pipe.expire(keys.job_meta(job_id), settings.timeout_for(op) * settings.max_tries + settings.result_ttl)
        stats.add_count(pipe, op.value, "enqueued")
        await pipe.execute()
    request_id = meta.get("request_id") or None
    await _enqueue(redis, op, json.loads(meta["args"]), job_id=job_id, queue=queue, request_id=request_id, defer_ms=0)
    log.info("job.requeued", job_id=job_id, operation=op.value)
    return True
