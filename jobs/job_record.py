"""What a running job writes about itself: its record, its worker's list of jobs, the statistics.

All of a try's bookkeeping goes in one round trip at its start and one at its end, so the cost per
job stays a few Redis calls whatever ifcflow records beside arq.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from arq import ArqRedis

from store import keys, stats

# Record fields that decide what happens around the job: read in the same round trip as the start.
HOOK_FIELDS = ("callback_url", "workflow_id", "cache")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class JobEnd:
    """How a try ended, for the bookkeeping: ``outcome`` None when it was only interrupted."""

    outcome: stats.Outcome | None
    result_ttl: int | None = None  # set when the job is over: its record then lives as long as its result
    retry: tuple[int, str, float] | None = None  # attempt, reason, delay (s) of a try to come


async def begin(
    redis: ArqRedis, *, worker_id: str, job_id: str, attempt: int, operation: str, waited_s: float | None
) -> dict[str, str]:
    """Note the start of a try; returns the job's hook fields that are set."""
    async with redis.pipeline(transaction=False) as pipe:
        # Recorded under this worker so that, should it die, a live worker hands the job back.
        pipe.sadd(keys.worker_jobs(worker_id), job_id)
        started = {"started_at": now_ms(), "tries": attempt, "progress": "", "retry": ""}
        pipe.hset(keys.job_meta(job_id), mapping=started)
        pipe.hmget(keys.job_meta(job_id), list(HOOK_FIELDS))
        if waited_s is not None:
            stats.add_observation(pipe, "queue_wait", operation, max(waited_s, 0.0))
        _, _, values, *_ = await pipe.execute()
    return {k: v.decode() for k, v in zip(HOOK_FIELDS, values, strict=True) if v}


async def end(
    redis: ArqRedis, *, worker_id: str, job_id: str, operation: str, duration_s: float, end: JobEnd
) -> None:
    """Note the end of a try."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.srem(keys.worker_jobs(worker_id), job_id)
        if end.result_ttl is not None:
            pipe.expire(keys.job_meta(job_id), end.result_ttl)
        if end.retry is not None:
            attempt, reason, delay = end.retry
            note = {"attempt": attempt, "reason": reason[:500], "next_try_at": now_ms() + int(delay * 1000)}
            pipe.hset(keys.job_meta(job_id), "retry", json.dumps(note))
        if end.outcome is not None:
            stats.add_count(pipe, operation, end.outcome)
            if end.outcome != "retried":
                stats.add_observation(pipe, "duration", operation, duration_s)
        await pipe.execute()


async def set_progress(redis: ArqRedis, job_id: str, percent: float, phase: str) -> None:
    progress = json.dumps({"percent": round(percent, 1), "phase": phase[:200]})
    await redis.hset(keys.job_meta(job_id), "progress", progress)
