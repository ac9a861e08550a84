"""Handing back the jobs of a worker that died, at once rather than after arq's in-progress TTL.

arq lets another worker run a job only when its in-progress key expires: the longest function
timeout plus 10 s (over two hours on a worker that serves clash). Every worker records the jobs it
runs; when a worker's heartbeat lapses, any live worker deletes those jobs' in-progress keys, and
since arq keeps a running job in its queue, the next poll of any worker starts it again.
"""

from __future__ import annotations

import time

import structlog
from arq import ArqRedis

from contracts import keys

log = structlog.get_logger("jobs.reaper")

# Atomic per dead worker, and re-checks the heartbeat so a worker that came back is left alone.
_REAP = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) >= tonumber(ARGV[2]) then return false end
local jobs = redis.call('SMEMBERS', KEYS[2])
for _, id in ipairs(jobs) do redis.call('DEL', ARGV[3] .. id) end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[1], ARGV[1])
return jobs
"""


async def record_start(redis: ArqRedis, worker_id: str, job_id: str) -> None:
    await redis.sadd(keys.worker_jobs(worker_id), job_id)


async def record_end(redis: ArqRedis, worker_id: str, job_id: str) -> None:
    await redis.srem(keys.worker_jobs(worker_id), job_id)


async def reap_dead_workers(redis: ArqRedis, dead_after_s: float) -> list[str]:
    """Hand back the jobs of every worker silent for ``dead_after_s``; returns the job ids handed back."""
    dead_before = int((time.time() - dead_after_s) * 1000)
    handed_back: list[str] = []
    for raw in await redis.zrangebyscore(keys.WORKERS, "-inf", dead_before):
        worker_id = raw.decode()
        jobs = await redis.eval(
            _REAP, 3, keys.WORKERS, keys.worker_jobs(worker_id), keys.worker(worker_id),
            worker_id, str(dead_before), keys.ARQ_IN_PROGRESS,
        )
        if jobs:
            ids = [j.decode() for j in jobs]
            handed_back.extend(ids)
            log.warning("worker.dead_jobs_handed_back", dead_worker=worker_id, job_ids=ids)
    return handed_back
