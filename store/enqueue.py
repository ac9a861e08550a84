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
import os
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from arq import ArqRedis
from arq.jobs import serialize_job
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

from contracts.operations import Operation
from settings import Settings
from store import keys
from store.serialization import serialize

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
    # Drawn at random just now (``new_job_id``): no earlier job can hold it, so nothing is checked.
    fresh_id: bool = False


def new_job_id() -> str:
    """A random job id: 128 bits from the OS, as 32 hex digits."""
    return os.urandom(16).hex()


def fingerprint(op: Operation, request: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps([op.value, request], option=orjson.OPT_SORT_KEYS)).hexdigest()


def now_ms() -> int:
    return int(time.time() * 1000)


# The whole submit in one round trip: our record, the counters and index, and arq's own job key and
# queue entry exactly as arq's enqueue_job writes them. The record's fields come last, as name/value
# pairs (ARGV[10] on). The recent-jobs index is trimmed by one submit in 64 (ARGV[9]), which keeps it
# within a few hundred of its cap for one call fewer on every other submit. An id that may be taken
# (ARGV[1], its fingerprint, is set) is checked first: a taken one returns the fingerprint of the
# request that took it (same request: a replay; another: a conflict). A fresh random id cannot be
# taken, so its submit skips the check (ARGV[1] is empty).
_CREATE = f"""
if ARGV[1] ~= '' then
  local existing = redis.call('HGET', KEYS[1], 'fingerprint')
  if existing then return existing end
  if redis.call('EXISTS', KEYS[2], KEYS[3]) > 0 then return '' end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 10))
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('HINCRBY', KEYS[6], ARGV[8], 1)
redis.call('ZADD', KEYS[5], ARGV[7], ARGV[6])
if ARGV[9] == '1' then redis.call('ZREMRANGEBYRANK', KEYS[5], 0, {-keys.RECENT_JOBS_MAX - 1}) end
redis.call('PSETEX', KEYS[2], ARGV[4], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[6])
return false
"""
CREATE_SHA = hashlib.sha1(_CREATE.encode(), usedforsecurity=False).hexdigest()


def _trims(job_id: str) -> str:
    # Which submits trim the recent-jobs index: chosen by the id's hash, so about one in 64 whatever
    # the ids look like (random, derived from an Idempotency-Key, a schedule's).
    return "1" if zlib.crc32(job_id.encode()) % 64 == 0 else ""


def _score(settings: Settings, job: NewJob, now: int) -> int:
    if job.due_ms is not None and job.due_ms > now:
        return job.due_ms
    return now - PRIORITY_LEVEL[job.priority] * int(settings.priority_aging * 1000)


@dataclass(frozen=True)
class CreateCall:
    """One job's create script call: what to send, and what tells a replay from a conflict."""

    job_id: str
    keys: list[str]
    args: list[Any]
    fingerprint: str  # empty for a fresh id: nothing to tell apart

    def created(self, taken: bytes | None) -> bool:
        """True when the call made the job; False for a replay; ``IdempotencyConflict`` otherwise."""
        if taken is None:
            return True
        if taken and taken.decode() != self.fingerprint:
            raise IdempotencyConflict(self.job_id)
        return False


def create_call(redis: ArqRedis, settings: Settings, job: NewJob) -> CreateCall:
    """The script call that records and enqueues ``job`` (see ``create_job``)."""
    op = job.op.value
    queue = settings.queue_for(job.op)
    print_ = "" if job.fresh_id else fingerprint(job.op, job.request)
    now_us = time.time_ns() // 1000
    now = now_us // 1000
    score = _score(settings, job, now)
    # Outlives every try of the job; the worker shortens it to the result TTL when the job ends.
    ttl = max(0, score - now) // 1000 + settings.timeout_for(job.op) * settings.max_tries + settings.result_ttl
    kwargs = {"request": job.request, "request_id": job.request_id}
    payload = serialize_job(op, (), kwargs, None, now, serializer=serialize)
    record = [
        "operation", op,
        "queue", queue,
        "request_id", job.request_id or "",
        "args", orjson.dumps(job.request),
        "priority", job.priority,
        "enqueued_at", now,
    ]
    if print_:
        record += ["fingerprint", print_]
    for name, value in job.meta.items():
        record += [name, value]
    return CreateCall(
        job_id=job.job_id,
        keys=[keys.job_meta(job.job_id), keys.ARQ_JOB + job.job_id, keys.ARQ_RESULT + job.job_id, queue,
              keys.RECENT_JOBS, keys.STATS_COUNTS],
        args=[print_, ttl, payload, score - now + redis.expires_extra_ms, score, job.job_id, now_us,
              f"{op}:enqueued", _trims(job.job_id), *record],
        fingerprint=print_,
    )


async def run_create(redis: Redis | Pipeline, call: CreateCall) -> Any:
    """Send one create call (on a pipeline: queue it); the script is loaded when Redis lacks it."""
    if isinstance(redis, Pipeline):
        return redis.evalsha(CREATE_SHA, len(call.keys), *call.keys, *call.args)
    try:
        return await redis.evalsha(CREATE_SHA, len(call.keys), *call.keys, *call.args)
    except NoScriptError:
        return await redis.eval(_CREATE, len(call.keys), *call.keys, *call.args)


async def load_create_script(redis: Redis) -> None:
    """Make sure Redis has the create script (after a restart it has none)."""
    await redis.script_load(_CREATE)


async def create_job(redis: ArqRedis, settings: Settings, job: NewJob) -> bool:
    """Record and enqueue a job in one step. False when a job with this id exists already (the same
    request again); ``IdempotencyConflict`` when it exists for another request."""
    call = create_call(redis, settings, job)
    return call.created(await run_create(redis, call))


async def enqueue(redis: ArqRedis, settings: Settings, job: NewJob, queue: str) -> None:
    """Put an already recorded job on its queue, at the place its priority or due time gives it."""
    score = _score(settings, job, now_ms())
    await redis.enqueue_job(
        job.op.value,
        request=job.request,
        request_id=job.request_id,
        _job_id=job.job_id,
        _queue_name=queue,
        _defer_until=datetime.fromtimestamp(score / 1000, tz=UTC),
    )
