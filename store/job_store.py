"""The job store: the one module that reads and writes a job's Redis keys, ours and arq's.

A job's truth is its record, the hash ``ifcflow:job:<id>``: every transition (queued, deferred,
in_progress, retrying, complete, failed, aborted) is written there, each in one atomic script
(``store/lua``), so ``GET /jobs/{id}`` is one ``HGETALL`` and live status follows one key. arq's own
keys (its job payload and queue entry, in-progress marker, abort set) are written here only where
arq reads them: to enqueue, claim, cancel, abort and requeue. The layout they follow is arq's
(``arq.constants``), checked by ``tests/test_arq_contract.py``.

Who calls what: the gateway ``create``/``get``/``cancel``/``requeue``; the worker's hooks
(``jobs/hooks.py``) ``start``/``finish``/``set_progress``; its claim (``jobs/arq_adapter.py``)
``claim``; its heartbeat ``reap_dead_workers``.
"""

from __future__ import annotations

import hashlib
import os
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack
import orjson
from arq import ArqRedis
from arq.constants import expires_extra_ms
from arq.jobs import deserialize_result, serialize_job
from redis.asyncio import Redis

from contracts.operations import OPERATIONS, Operation
from contracts.webhooks import DELIVER_FUNCTION
from contracts.wire import ErrorInfo
from settings import Settings
from store import keys, scripts, stats
from store.job_view import JobView, decode, view_of
from store.serialization import JobError, deserialize, error_info, serialize

Priority = Literal["high", "normal", "low"]
PRIORITY_LEVEL: dict[str, int] = {"low": 0, "normal": 1, "high": 2}
# How long an abort request waits in arq's abort set for a worker that missed its message.
ABORT_WINDOW_MS = 600_000
# Queue entries one claim may read past running jobs (a fleet of 20 workers x 1,000 slots).
CLAIM_SCAN = 20_000
# Queued jobs whose service is full that one claim passes over looking for others: bounds the cost of
# a poll behind a deep backlog for a busy service (route such an operation to a queue of its own to
# isolate it completely). Shared between the queue's projects: each passes over its part.
CLAIM_PASS_OVER = 5_000
# The project of a job submitted without one (and of jobs in arq's queue that no project index holds).
DEFAULT_PROJECT = keys.DEFAULT_PROJECT


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
    # Whose job it is: a queue serves its projects fairly (store/lua/claim.lua).
    project: str = DEFAULT_PROJECT
    meta: dict[str, str] = field(default_factory=dict)  # more record fields: callback, workflow, ...
    # Drawn at random just now (``new_job_id``): no earlier job can hold it, so nothing is checked.
    fresh_id: bool = False


def new_job_id() -> str:
    """A random job id: 128 bits from the OS, as 32 hex digits."""
    return os.urandom(16).hex()


def fingerprint(op: Operation, request: dict[str, Any]) -> str:
    """What an Idempotency-Key replay must repeat: the request, but for the input versions the gateway
    pinned (the same request sent again after a re-upload pins the newer one, and is still the replay)."""
    if "input_version_ids" in request:
        request = {k: v for k, v in request.items() if k != "input_version_ids"}
    return hashlib.sha256(orjson.dumps([op.value, request], option=orjson.OPT_SORT_KEYS)).hexdigest()


def now_ms() -> int:
    return int(time.time() * 1000)


def score_of(settings: Settings, priority: str, due_ms: int | None, now: int) -> int:
    """A job's place in arq's queue: its due time, moved back by ``priority_aging`` per level above
    low when due now, so a job that waited that long is served before a newer one a level up."""
    if due_ms is not None and due_ms > now:
        return due_ms
    return now - PRIORITY_LEVEL[priority] * int(settings.priority_aging * 1000)


def _record_ttl(settings: Settings, op: Operation, wait_ms: int) -> int:
    # Outlives every try of the job; its end shortens it to the result TTL.
    return max(0, wait_ms) // 1000 + settings.timeout_for(op) * settings.max_tries + settings.result_ttl


def _payload(op: Operation, request: dict[str, Any], request_id: str | None, now: int) -> bytes:
    # Exactly what arq's ``enqueue_job`` stores for these arguments (tests/test_arq_contract.py).
    kwargs = {"request": request, "request_id": request_id}
    return serialize_job(op.value, (), kwargs, None, now, serializer=serialize)


def _pack_fields(fields: list[Any]) -> bytes:
    # The old msgpack format (no str8, no bin): what Redis's Lua cmsgpack reads.
    return msgpack.packb([v.decode() if isinstance(v, bytes) else str(v) for v in fields], use_bin_type=False)  # type: ignore[no-any-return]


def _trims(job_id: str) -> str:
    # About one submit in 64 trims the recent-jobs index, chosen by the id's hash whatever ids look like.
    return "1" if zlib.crc32(job_id.encode()) % 64 == 0 else ""


# --- the gateway's side: create, read, cancel, requeue ----------------------------------------------


def _create_call(settings: Settings, job: NewJob) -> tuple[list[str], list[Any]]:
    op = job.op
    queue = settings.queue_for(op)
    print_ = "" if job.fresh_id else fingerprint(op, job.request)
    now_us = time.time_ns() // 1000
    now = now_us // 1000
    score = score_of(settings, job.priority, job.due_ms, now)
    deferred = score > now
    record: list[Any] = [
        "operation", op.value, "queue", queue, "request_id", job.request_id or "",
        "args", orjson.dumps(job.request), "priority", job.priority, "enqueued_at", now,
        "status", "deferred" if deferred else "queued", "project", job.project,
    ]
    if deferred:
        record += ["due_at", score]
    if print_:
        record += ["fingerprint", print_]
    for name, value in job.meta.items():
        record += [name, value]
    return (
        [keys.job_meta(job.job_id), keys.ARQ_JOB + job.job_id, keys.ARQ_RESULT + job.job_id, queue,
         keys.RECENT_JOBS, keys.STATS_COUNTS, keys.fair_index(queue, job.project), keys.fair_projects(queue),
         keys.STATS_PROJECT_COUNTS, keys.wake_flag(queue)],
        [print_, _record_ttl(settings, op, score - now), _payload(op, job.request, job.request_id, now),
         score - now + expires_extra_ms, score, job.job_id, now_us, f"{op.value}:enqueued", _trims(job.job_id),
         keys.RECENT_JOBS_MAX, _pack_fields(record), job.project, "" if deferred else keys.wake_channel(queue),
         keys.WAKE_FLAG_TTL_MS],
    )


def _created(job: NewJob, taken: bytes | None) -> bool:
    if taken is None:
        return True
    if taken and (job.fresh_id or taken.decode() != fingerprint(job.op, job.request)):
        raise IdempotencyConflict(job.job_id)
    return False


def queue_create(pipe: Any, settings: Settings, job: NewJob) -> None:
    """Add ``job``'s create to ``pipe``, a MULTI transaction of the caller's (a workflow step starting
    with its state write). EVAL, not EVALSHA: a script Redis forgot would fail inside the MULTI while
    the writes beside it succeeded."""
    job_keys, args = _create_call(settings, job)
    pipe.eval(scripts.CREATE.source, len(job_keys), *job_keys, *args)


async def create(redis: Redis, settings: Settings, job: NewJob) -> bool:
    """Record and enqueue ``job`` in one step. False when its id exists already for the same request
    (a replay, nothing enqueued); ``IdempotencyConflict`` when it exists for another request."""
    return _created(job, await scripts.CREATE(redis, *_create_call(settings, job)))


async def create_many(redis: Redis, settings: Settings, jobs: list[NewJob]) -> list[bool | BaseException]:
    """``create`` for each of ``jobs``, sent as one pipeline: each create is still its own atomic
    script; what each gives (or raises) comes back in order."""
    calls = [_create_call(settings, job) for job in jobs]
    replies = await scripts.CREATE.many(redis, calls)
    out: list[bool | BaseException] = []
    for job, reply in zip(jobs, replies, strict=True):
        if isinstance(reply, BaseException):
            out.append(reply)
            continue
        try:
            out.append(_created(job, reply))
        except IdempotencyConflict as exc:
            out.append(exc)
    return out


async def record_of(redis: Redis, job_id: str) -> dict[str, str]:
    """The job's record as stored (empty when there is none)."""
    return decode(await redis.hgetall(keys.job_meta(job_id)))  # type: ignore[misc]


async def get(redis: Redis, job_id: str) -> JobView | None:
    """The job as clients see it, or None when Redis knows nothing of it: one round trip."""
    return view_of(job_id, await record_of(redis, job_id))


async def get_many(redis: Redis, job_ids: list[str]) -> list[JobView]:
    """Views of many jobs in one round trip; ids Redis no longer knows are left out."""
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hgetall(keys.job_meta(job_id))
        raws = await pipe.execute()
    views = (view_of(job_id, decode(raw)) for job_id, raw in zip(job_ids, raws, strict=True))
    return [v for v in views if v is not None]


async def cancel(redis: ArqRedis, settings: Settings, job_id: str) -> str:
    """'cancelled' for a job that had not started; 'aborting' for a running one (its worker is told);
    'gone' or the job's terminal status otherwise."""
    record = await record_of(redis, job_id)
    queue = record.get("queue") or settings.queue_name
    error = orjson.dumps({"type": "aborted", "message": "job cancelled before it started"})
    outcome = (await scripts.CANCEL(
        redis,
        [queue, keys.ARQ_IN_PROGRESS + job_id, keys.ARQ_JOB + job_id, keys.ARQ_RETRY + job_id, keys.job_meta(job_id),
         keys.fair_projects(queue)],
        [job_id, now_ms(), settings.result_ttl, error, keys.fair_index_prefix(queue)],
    )).decode()
    if outcome == "cancelled" and record.get("callback_url"):
        await schedule_delivery(redis, "job", job_id, now_ms(), queue)
    if outcome != "running":
        return str(outcome)
    await scripts.ABORT(redis, [keys.ARQ_ABORT], [job_id, now_ms(), ABORT_WINDOW_MS, keys.ABORT_CHANNEL])
    return "aborting"


async def requeue(redis: Redis, settings: Settings, job_id: str) -> str:
    """Run a failed or aborted job again under its id with its arguments: 'requeued', or why not
    (its status, 'busy', 'gone'). Of many concurrent calls exactly one requeues."""
    record = await record_of(redis, job_id)
    if not record.get("args"):
        return "gone"
    op = Operation(record["operation"])
    now = now_ms()
    score = score_of(settings, record.get("priority") or "normal", None, now)
    payload = _payload(op, orjson.loads(record["args"]), record.get("request_id") or None, now)
    queue = record.get("queue") or settings.queue_for(op)
    outcome = await scripts.REQUEUE(
        redis,
        [keys.job_meta(job_id), queue, keys.ARQ_JOB + job_id,
         keys.ARQ_RESULT + job_id, keys.ARQ_RETRY + job_id, keys.ARQ_IN_PROGRESS + job_id, keys.ARQ_ABORT,
         keys.STATS_COUNTS, keys.fair_projects(queue), keys.STATS_PROJECT_COUNTS, keys.wake_flag(queue)],
        [job_id, now, _record_ttl(settings, op, 0), payload, expires_extra_ms, score, f"{op.value}:enqueued",
         "queued", "", keys.fair_index_prefix(queue), keys.wake_channel(queue), keys.WAKE_FLAG_TTL_MS],
    )
    return str(outcome.decode())


async def schedule_delivery(redis: ArqRedis, kind: str, target_id: str, finished_ms: int, queue: str) -> None:
    """Enqueue the webhook delivery of a finished job or workflow, once per end (arq's own enqueue:
    a delivery is an internal arq job with no record of its own)."""
    await redis.enqueue_job(
        DELIVER_FUNCTION, kind=kind, target_id=target_id, _job_id=f"hook-{kind}-{target_id}-{finished_ms}",
        _queue_name=queue,
    )


# --- the worker's side: claim, start, progress, finish ----------------------------------------------


def _operation_limits(settings: Settings) -> list[Any]:
    """(operation, service, time limit in ms) for each operation, as the claim script takes them."""
    return [v for op in Operation for v in (op.value, OPERATIONS[op].service, settings.timeout_for(op) * 1000)]


def _in_flight_limits(settings: Settings) -> tuple[int, bytes]:
    """Running jobs allowed per project (0: any), as the claim script takes them: every project's, and
    a JSON object of the projects' own (``IFCFLOW_QUOTA_IN_FLIGHT``, ``IFCFLOW_PROJECT_QUOTAS``)."""
    own = {p: q.in_flight for p, q in settings.project_quotas.items() if q.in_flight is not None}
    return settings.quota_in_flight, orjson.dumps(own)


@dataclass(frozen=True)
class Claim:
    jobs: list[tuple[str, int]]  # (job id, queue score) of each claimed job
    waiting: int  # queued jobs passed over because their service is full (or their project runs its limit)


async def claim(
    redis: Redis, settings: Settings, queue: str, worker_id: str, free: int, in_progress_ms: int
) -> Claim:
    """Claim up to ``free`` due jobs of ``queue`` that no worker runs, recorded as held by
    ``worker_id`` in the same step, each with a slot of its service (``store/service_slots.py``):
    ``(job id, score)`` each. Jobs whose service is full stay queued, as do those of a project running
    its in-flight limit. The slots are shared fairly between the queue's projects
    (``store/lua/claim.lua``); inside a project jobs go in queue order."""
    claimed = await scripts.CLAIM(
        redis, [queue, keys.worker_jobs(worker_id), keys.fair_projects(queue), keys.fair_served(queue),
                keys.fair_counter(queue), keys.wake_flag(queue)],
        [now_ms(), in_progress_ms, free, worker_id, CLAIM_SCAN, keys.ARQ_IN_PROGRESS, keys.JOB_META,
         keys.SERVICE_SLOTS, keys.SERVICE_CAPACITY, CLAIM_PASS_OVER, keys.fair_index_prefix(queue),
         int(settings.priority_aging * 1000), keys.PROJECT_RUNNING, *_in_flight_limits(settings),
         *_operation_limits(settings)],
    )
    jobs = [(claimed[i].decode(), int(float(claimed[i + 1]))) for i in range(1, len(claimed), 2)]
    return Claim(jobs, waiting=int(claimed[0]))


@dataclass(frozen=True)
class JobStart:
    """What a try needs to know about its job, read as it starts."""

    operation: Operation
    queued_since_ms: int  # submit time, or due time of a deferred job
    request_id: str | None
    hooks: dict[str, str]  # callback_url, workflow_id, cache: those set
    # The service slot the claim took: "held", "free" (its service has no known capacity, nothing to
    # take), "expired" (waited past the time limit), "" (none yet: arq's own claims).
    slot: str = ""
    busy_tries: int = 0  # tries that only found the service busy: they do not count as tries
    busy_since_ms: int | None = None


async def start(redis: Redis, job_id: str, worker_id: str, attempt: int) -> JobStart | None:
    """Record the start of a try; None for a job without a record (a cron run, a webhook delivery)."""
    found = await scripts.START(
        redis, [keys.job_meta(job_id), keys.worker_jobs(worker_id)], [job_id, now_ms(), attempt, worker_id, keys.FAIR]
    )
    if not found:
        return None
    operation, enqueued, due, request_id, *rest = [v.decode() if v is not None else None for v in found]
    *hook_values, slot, busy_tries, busy_since = rest
    try:
        op = Operation(operation or "")
    except ValueError:
        return None
    hooks = {k: v for k, v in zip(("callback_url", "workflow_id", "cache"), hook_values, strict=True) if v}
    return JobStart(op, max(int(enqueued or 0), int(due or 0)), request_id or None, hooks, slot=slot or "",
                    busy_tries=int(busy_tries or 0), busy_since_ms=int(busy_since) if busy_since else None)


async def set_progress(redis: Redis, job_id: str, percent: float, phase: str) -> None:
    progress = orjson.dumps({"percent": round(percent, 1), "phase": phase[:200]}).decode()
    await redis.hset(keys.job_meta(job_id), "progress", progress)  # type: ignore[misc]


TryOutcome = Literal["complete", "failed", "aborted", "retry", "interrupted"]
_STAT_OUTCOME: dict[TryOutcome, stats.Outcome | None] = {
    "complete": "completed", "failed": "failed", "aborted": "aborted", "retry": "retried", "interrupted": None,
}


@dataclass(frozen=True)
class TryEnd:
    """How a try ended: over (complete, failed, aborted), to be tried again later (retry), or
    interrupted (the worker stops; arq runs it again)."""

    outcome: TryOutcome
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    retry_reason: str = ""
    retry_delay_s: float = 0.0
    busy: bool = False  # a retry that only waits for a busy service: not counted as a try


def _stat_triples(
    op: str, outcome: stats.Outcome | None, duration_s: float | None, waited_s: float | None
) -> list[Any]:
    out: list[Any] = []
    if outcome is not None:
        out += [keys.STATS_COUNTS, f"{op}:{outcome}", "1"]
    for name, seconds in (("duration", duration_s), ("queue_wait", waited_s)):
        if seconds is None:
            continue
        seconds = max(seconds, 0.0)
        key = keys.stats_histogram(name, op)
        out += [key, stats.bucket_field(seconds), "1", key, "sum", f"{seconds:.6f}", key, "count", "1"]
    return out


async def finish(
    redis: Redis, settings: Settings, job_id: str, worker_id: str, attempt: int, op: Operation, end: TryEnd,
    *, duration_s: float | None = None, waited_s: float | None = None,
) -> bool:
    """Record the end of a try (and its statistics) in one step; False when the record is gone or
    another worker holds the job by now."""
    now = now_ms()
    due = ""
    if end.outcome == "retry":
        due = str(now + int(end.retry_delay_s * 1000))
        field_, payload = "retry", orjson.dumps(
            {"attempt": attempt, "reason": end.retry_reason[:500], "next_try_at": int(due)})
    elif end.outcome == "complete":
        field_, payload = "result", orjson.dumps(end.result or {})
    else:
        field_, payload = "error", orjson.dumps((end.error or ErrorInfo(type="failed", message="")).model_dump())
    counted = end.outcome not in ("retry", "interrupted")
    triples = _stat_triples(op.value, _STAT_OUTCOME[end.outcome], duration_s if counted else None, waited_s)
    written = await scripts.FINISH(
        redis, [keys.job_meta(job_id), keys.worker_jobs(worker_id)],
        [job_id, end.outcome, now, settings.result_ttl, field_, payload, due, worker_id, "1" if end.busy else "",
         keys.FAIR, keys.STATS_PROJECT_COUNTS, _STAT_OUTCOME[end.outcome] or "", *triples],
    )
    return bool(written)


async def release(redis: Redis, job_id: str, worker_id: str) -> None:
    """A job without a record (cron run, webhook delivery) ended: the worker holds it no more."""
    await redis.srem(keys.worker_jobs(worker_id), job_id)  # type: ignore[misc]


async def settle_from_arq(redis: Redis, settings: Settings, job_id: str, worker_id: str = "") -> bool:
    """Bring the record in line with the result arq stored without our hook running (arq failed the
    job before calling it: expired, max tries, unknown function; or the worker died in between)."""
    raw = await redis.get(keys.ARQ_RESULT + job_id)
    record = await record_of(redis, job_id)
    if raw is None or not record.get("operation"):
        if worker_id:
            await release(redis, job_id, worker_id)
        return False
    info = deserialize_result(raw, deserializer=deserialize)
    if info.success:
        result = info.result if isinstance(info.result, dict) else {"value": info.result}
        end = TryEnd("complete", result=result)
    else:
        error = info.result.info if isinstance(info.result, JobError) else error_info(info.result)
        end = TryEnd("aborted" if error.type == "aborted" else "failed", error=error)
    return await finish(redis, settings, job_id, worker_id, info.job_try, Operation(record["operation"]), end)


async def pending_requests(redis: Redis, queues: list[str], batch: int = 500) -> list[tuple[str, dict[str, Any]]]:
    """``(operation, recorded request)`` of every job still in one of ``queues``: arq's queue sorted
    set holds a job from its submit to its end (queued, deferred, retrying, running), so these are the
    jobs that will still read their inputs. What the retention sweep must not remove."""
    found: list[tuple[str, dict[str, Any]]] = []
    for queue in dict.fromkeys(queues):
        ids = [raw.decode() for raw in await redis.zrange(queue, 0, -1)]
        for start in range(0, len(ids), batch):
            async with redis.pipeline(transaction=False) as pipe:
                for job_id in ids[start : start + batch]:
                    pipe.hmget(keys.job_meta(job_id), ["operation", "args"])
                rows = await pipe.execute()
            found += [(op.decode(), orjson.loads(args)) for op, args in rows if op and args]
    return found


async def abort_requests(redis: Redis, job_ids: list[str]) -> set[str]:
    """Which of ``job_ids`` (a worker's running jobs) have an abort request waiting: reads only those."""
    if not job_ids:
        return set()
    scores = await redis.zmscore(keys.ARQ_ABORT, job_ids)
    return {job_id for job_id, score in zip(job_ids, scores, strict=True) if score is not None}


async def reap_dead_workers(redis: Redis, settings: Settings, dead_after_s: float, own_id: str = "") -> list[str]:
    """Hand back the jobs of every worker silent for ``dead_after_s``; the ids handed back.

    A job arq had already finished when its worker died (between arq's result and our hook) is not
    run again: its record takes arq's result instead."""
    dead_before = int((time.time() - dead_after_s) * 1000)
    handed_back: list[str] = []
    for raw in await redis.zrangebyscore(keys.WORKERS, "-inf", dead_before):
        worker_id = raw.decode()
        if worker_id == own_id:  # the reaper is alive, whatever its last score says
            continue
        jobs = await scripts.REAP(
            redis, [keys.WORKERS, keys.worker_jobs(worker_id), keys.worker(worker_id)],
            [worker_id, dead_before, keys.ARQ_IN_PROGRESS, keys.JOB_META, keys.FAIR],
        )
        for job_id in (j.decode() for j in jobs or []):
            if await redis.exists(keys.ARQ_JOB + job_id):
                handed_back.append(job_id)
            else:
                await settle_from_arq(redis, settings, job_id)
    return handed_back
