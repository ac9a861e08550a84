"""Putting a job on an arq queue: shared by the gateway (submit, requeue) and the workers (workflow
steps, schedules), so every job has the same record and the same place in its queue.

Priorities live in arq's own queue order: a worker takes the due jobs with the lowest score first,
and the score of a job due now is its due time moved back by ``priority_aging`` seconds per level
above low. A waiting job is therefore served before a new job one level higher once it has waited
``priority_aging``: that bounds starvation. A deferred job keeps its due time as its score (it must
not start early), so it queues as a low job once due.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from arq import ArqRedis
from redis.exceptions import WatchError

from contracts import keys, stats
from contracts.operations import Operation
from settings import Settings

Priority = Literal["high", "normal", "low"]
PRIORITY_LEVEL: dict[str, int] = {"low": 0, "normal": 1, "high": 2}


class IdempotencyConflict(Exception):
    """The job id (from an Idempotency-Key) exists already with a different request."""


@dataclass(frozen=True)
class NewJob:
    op: Operation
    request: dict[str, Any]
    job_id: str
    request_id: str | None = None
    priority: Priority = "normal"
    due_ms: int | None = None  # absolute time to start at (deferred); None: now
    meta: dict[str, str] = field(default_factory=dict)  # more record fields: callback, workflow, ...


def fingerprint(op: Operation, request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([op.value, request], sort_keys=True).encode()).hexdigest()


def now_ms() -> int:
    return int(time.time() * 1000)


async def create_job(redis: ArqRedis, settings: Settings, job: NewJob) -> bool:
    """Write the job's record, then enqueue it. False when a job with this id exists already
    (the same request again); ``IdempotencyConflict`` when it exists with another request."""
    meta_key = keys.job_meta(job.job_id)
    queue = settings.queue_for(job.op)
    print_ = fingerprint(job.op, job.request)
    wait_s = max(0, ((job.due_ms or 0) - now_ms()) // 1000)
    # Outlives every try of the job; the worker shortens it to the result TTL when the job ends.
    ttl = wait_s + settings.timeout_for(job.op) * settings.max_tries + settings.result_ttl
    async with redis.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(meta_key)
            existing = await pipe.hget(meta_key, "fingerprint")
            if existing is not None:
                await pipe.unwatch()
                if existing.decode() != print_:
                    raise IdempotencyConflict(job.job_id)
                return False
            pipe.multi()
            pipe.hset(
                meta_key,
                mapping={
                    "operation": job.op.value,
                    "queue": queue,
                    "request_id": job.request_id or "",
                    "args": json.dumps(job.request),
                    "fingerprint": print_,
                    "priority": job.priority,
                    "enqueued_at": now_ms(),
                    **job.meta,
                },
            )
            pipe.expire(meta_key, ttl)
            stats.add_count(pipe, job.op.value, "enqueued")
            pipe.zadd(keys.RECENT_JOBS, {job.job_id: now_ms()})
            pipe.zremrangebyrank(keys.RECENT_JOBS, 0, -keys.RECENT_JOBS_MAX - 1)
            await pipe.execute()
        except WatchError:
            return False  # a concurrent request with the same id won the race and enqueues the job
    await enqueue(redis, settings, job, queue)
    return True


async def enqueue(redis: ArqRedis, settings: Settings, job: NewJob, queue: str) -> None:
    """Put an already recorded job on its queue, at the place its priority or due time gives it."""
    now = now_ms()
    if job.due_ms is not None and job.due_ms > now:
        score = job.due_ms
    else:
        score = now - PRIORITY_LEVEL[job.priority] * int(settings.priority_aging * 1000)
    await redis.enqueue_job(
        job.op.value,
        request=job.request,
        request_id=job.request_id,
        _job_id=job.job_id,
        _queue_name=queue,
        _defer_until=datetime.fromtimestamp(score / 1000, tz=UTC),
    )
