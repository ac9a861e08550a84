"""What a running job writes into its ``ifcflow:job:<id>`` record: start, progress, retries, end."""

from __future__ import annotations

import json
import time

from arq import ArqRedis

from contracts import keys


def now_ms() -> int:
    return int(time.time() * 1000)


# Record fields that decide what happens around the job: read in the same round trip as the start.
HOOK_FIELDS = ("callback_url", "workflow_id", "cache")


async def mark_started(redis: ArqRedis, job_id: str, attempt: int) -> dict[str, str]:
    """Note the start of a try; returns the job's hook fields that are set."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(
            keys.job_meta(job_id),
            mapping={"started_at": now_ms(), "tries": attempt, "progress": "", "retry": ""},
        )
        pipe.hmget(keys.job_meta(job_id), list(HOOK_FIELDS))
        _, values = await pipe.execute()
    return {k: v.decode() for k, v in zip(HOOK_FIELDS, values, strict=True) if v}


async def set_progress(redis: ArqRedis, job_id: str, percent: float, phase: str) -> None:
    progress = json.dumps({"percent": round(percent, 1), "phase": phase[:200]})
    await redis.hset(keys.job_meta(job_id), "progress", progress)


async def mark_retrying(redis: ArqRedis, job_id: str, attempt: int, reason: str, delay: float) -> None:
    retry = json.dumps({"attempt": attempt, "reason": reason[:500], "next_try_at": now_ms() + int(delay * 1000)})
    await redis.hset(keys.job_meta(job_id), "retry", retry)


async def mark_finished(redis: ArqRedis, job_id: str, result_ttl: int) -> None:
    # The record lives as long as arq keeps the result it describes (the end time is in that result).
    await redis.expire(keys.job_meta(job_id), result_ttl)
