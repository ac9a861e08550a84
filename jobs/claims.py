"""Claiming due jobs in one round trip per poll, instead of arq's four per job.

arq's ``Worker.start_jobs`` claims each job with its own optimistic transaction (``WATCH``,
``EXISTS``, ``ZSCORE``, ``MULTI PSETEX EXEC``): 1,000 due jobs cost 4,000 sequential round trips
before the last one starts, which kept "1,000 jobs in flight at once" well behind the ideal. One Lua
script makes the same checks and sets the same ``arq:in-progress:<id>`` keys for a whole batch
atomically, so no two workers can claim one job, exactly as with arq's transaction.

``arq jobs.WorkerSettings`` builds its worker with ``arq.worker.create_worker``, which has no hook
for the class; ``install`` points arq at this subclass, and only when arq still has what it relies on.
"""

from __future__ import annotations

import inspect
from typing import Any

import arq.worker
import structlog
from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from redis.asyncio import Redis

log = structlog.get_logger("jobs.worker")

# For each id, until ARGV[4] are claimed: due (score <= now), still queued and not running anywhere
# -> mark it running. The ids a poll reads include those already running (they stay queued until they
# end), so the limit counts claims, not ids. Returns the claimed ids, each followed by its score.
_CLAIM = """
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[4])
local out = {}
for i = 5, #ARGV do
  if #out >= 2 * limit then break end
  local id = ARGV[i]
  local running = ARGV[3] .. id
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= now and redis.call('EXISTS', running) == 0 then
    redis.call('PSETEX', running, ARGV[2], '1')
    out[#out + 1] = id
    out[#out + 1] = score
  end
end
return out
"""

# What the override relies on in arq's worker: these methods, and these attributes set in __init__.
_METHODS = ("start_jobs", "run_job", "_release_sem_dec_counter_on_complete", "pool")
_ATTRIBUTES = ("self.sem", "self.job_counter", "self.max_jobs", "self.tasks", "self.queue_name",
               "self.in_progress_timeout_s")


async def claim(
    redis: Redis, queue: str, job_ids: list[bytes], limit: int, in_progress_ms: int
) -> list[tuple[str, int]]:
    """Claim up to ``limit`` of ``job_ids`` that are due and not running: ``(job id, score)`` each."""
    args: list[Any] = [timestamp_ms(), in_progress_ms, in_progress_key_prefix, limit, *job_ids]
    claimed = await redis.eval(_CLAIM, 1, queue, *args)  # type: ignore[misc]
    return [(claimed[i].decode(), int(float(claimed[i + 1]))) for i in range(0, len(claimed), 2)]


class BatchClaimWorker(arq.worker.Worker):
    """arq's worker with one claim round trip per poll."""

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Claim as many of ``job_ids`` as there are free slots, in one script call, and start them."""
        free = self.max_jobs - self.job_counter
        if free <= 0 or not job_ids:
            return
        in_progress_ms = int(self.in_progress_timeout_s * 1000)
        for job_id, score in await claim(self.pool, self.queue_name, job_ids, free, in_progress_ms):
            await self.sem.acquire()
            self.job_counter += 1
            task = self.loop.create_task(self.run_job(job_id, score))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task


def install() -> None:
    """Make arq's ``create_worker`` build ``BatchClaimWorker`` (this process only).

    Where arq's worker no longer has what the override relies on, arq's own claims stay, with a warning.
    """
    try:
        source = inspect.getsource(arq.worker.Worker.__init__)
    except (OSError, TypeError):
        source = ""
    if not all(hasattr(arq.worker.Worker, m) for m in _METHODS) or not all(a in source for a in _ATTRIBUTES):
        log.warning("worker.batch_claims_off", reason="arq's Worker differs from the versions this was tested with")
        return
    arq.worker.Worker = BatchClaimWorker  # type: ignore[misc]
