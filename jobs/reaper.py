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

from store import keys

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


# A worker killed between arq's claim of a job (the in-progress key) and its record of it leaves a
# claim no dead worker's record names, so the reap above misses it and it would wait for arq's TTL.
# A claim of an operation job (one with an ifcflow record) that no live worker has recorded is noted
# on first sight and handed back if still unowned ``grace`` later (a live worker records its claim
# within milliseconds). Only the head of the queue is looked at: running jobs are the earliest due.
_REAP_ORPHANS = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[6]))
local workers = redis.call('ZRANGE', KEYS[2], 0, -1)
local seen, handed = {}, {}
for _, id in ipairs(due) do
  if redis.call('EXISTS', ARGV[3] .. id) == 1 and redis.call('EXISTS', ARGV[5] .. id) == 1 then
    local owned = false
    for _, w in ipairs(workers) do
      if redis.call('SISMEMBER', ARGV[4] .. w, id) == 1 then owned = true break end
    end
    if not owned then
      seen[id] = true
      local first = redis.call('HGET', KEYS[3], id)
      if not first then
        redis.call('HSET', KEYS[3], id, ARGV[1])
      elseif tonumber(ARGV[1]) - tonumber(first) >= tonumber(ARGV[2]) then
        redis.call('DEL', ARGV[3] .. id)
        redis.call('HDEL', KEYS[3], id)
        table.insert(handed, id)
      end
    end
  end
end
for _, id in ipairs(redis.call('HKEYS', KEYS[3])) do
  if not seen[id] then redis.call('HDEL', KEYS[3], id) end
end
return handed
"""
_ORPHAN_SCAN = 1000  # queue entries looked at per sweep


async def reap_orphans(redis: ArqRedis, queue: str, grace_s: float) -> list[str]:
    """Hand back the jobs of ``queue`` claimed by a worker that died before recording them."""
    jobs = await redis.eval(
        _REAP_ORPHANS, 3, queue, keys.WORKERS, keys.orphan_suspects(queue),
        str(int(time.time() * 1000)), str(int(grace_s * 1000)), keys.ARQ_IN_PROGRESS, keys.WORKER_JOBS,
        keys.JOB_META, str(_ORPHAN_SCAN),
    )
    ids = [j.decode() for j in jobs or []]
    if ids:
        log.warning("worker.orphaned_jobs_handed_back", queue=queue, job_ids=ids)
    return ids


async def reap_dead_workers(redis: ArqRedis, dead_after_s: float, own_id: str = "") -> list[str]:
    """Hand back the jobs of every worker silent for ``dead_after_s``; returns the job ids handed back."""
    dead_before = int((time.time() - dead_after_s) * 1000)
    handed_back: list[str] = []
    for raw in await redis.zrangebyscore(keys.WORKERS, "-inf", dead_before):
        worker_id = raw.decode()
        if worker_id == own_id:  # the reaper is alive, whatever its last score says
            continue
        jobs = await redis.eval(
            _REAP, 3, keys.WORKERS, keys.worker_jobs(worker_id), keys.worker(worker_id),
            worker_id, str(dead_before), keys.ARQ_IN_PROGRESS,
        )
        if jobs:
            ids = [j.decode() for j in jobs]
            handed_back.extend(ids)
            log.warning("worker.dead_jobs_handed_back", dead_worker=worker_id, job_ids=ids)
    return handed_back
