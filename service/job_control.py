"""Putting jobs on the queue and taking them off: submit, cancel, requeue."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, TypeVar, cast

import structlog
from arq import ArqRedis

from contracts.operations import Operation
from contracts.webhooks import schedule_delivery
from service.schemas import JobOptions
from service.submitter import JobSubmitter
from settings import Settings
from store import keys, stats
from store.enqueue import NewJob, Priority, enqueue, new_job_id, now_ms
from store.job_view import JobStatus, read_job, read_meta

log = structlog.get_logger("service.jobs")
T = TypeVar("T")

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


IDEMPOTENCY_KEY_MAX = 255


def job_id_for(idempotency_key: str | None, api_key: str) -> str:
    """A new random id, or one derived from the key, scoped to the caller so callers never collide."""
    if not idempotency_key:
        return new_job_id()
    digest = hashlib.sha256(f"{api_key}\0{idempotency_key}".encode()).hexdigest()
    return f"idem-{digest[:32]}"


def due_ms(options: JobOptions) -> int | None:
    """When a deferred job is due (epoch ms), or None to run now."""
    if options.defer_until is not None:
        return int(options.defer_until.timestamp() * 1000)
    if options.defer_by:
        return now_ms() + int(options.defer_by * 1000)
    return None


async def submit(
    submitter: JobSubmitter,
    settings: Settings,
    op: Operation,
    request: dict[str, Any],
    options: JobOptions,
    *,
    job_id: str,
    request_id: str | None,
    fresh_id: bool,
    meanwhile: Callable[[], T],
) -> tuple[bool, T]:
    """Record and enqueue a job under ``job_id`` (False when that id exists: a replay, enqueueing
    nothing), with what ``meanwhile`` makes while Redis works. ``fresh_id``: drawn by ``new_job_id``."""
    meta = {"callback_url": options.callback_url} if options.callback_url else {}
    if options.cache:
        meta["cache"] = "1"

    def bound() -> T:
        # Said once, on the request's own log line (http.request) rather than a line of its own.
        structlog.contextvars.bind_contextvars(job_id=job_id, operation=op.value, priority=options.priority)
        return meanwhile()

    job = NewJob(
        op, request, job_id, request_id=request_id, priority=options.priority, due_ms=due_ms(options), meta=meta,
        fresh_id=fresh_id,
    )
    return await submitter.create(job, bound)


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
            str(now_ms()),
            str(settings.result_ttl),
        )
        outcome = outcome.decode() if isinstance(outcome, bytes) else str(outcome)
        if outcome == "cancelled" and await redis.hexists(keys.job_meta(job_id), "callback_url"):
            await schedule_delivery(redis, "job", job_id, now_ms(), queue)
        if outcome != "running":
            return outcome
    # Running: recorded in arq's abort set, and published so the worker running it aborts it at once.
    await redis.zadd(keys.ARQ_ABORT, {job_id: now_ms()})
    await redis.publish(keys.ABORT_CHANNEL, job_id)
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
        pipe.hset(keys.job_meta(job_id), "enqueued_at", str(now_ms()))
        pipe.expire(keys.job_meta(job_id), settings.timeout_for(op) * settings.max_tries + settings.result_ttl)
        stats.add_count(pipe, op.value, "enqueued")
        await pipe.execute()
    job = NewJob(
        op,
        json.loads(meta["args"]),
        job_id,
        request_id=meta.get("request_id") or None,
        priority=cast(Priority, meta.get("priority") or "normal"),
    )
    await enqueue(redis, settings, job, queue)
    log.info("job.requeued", job_id=job_id, operation=op.value)
    return True
