"""The one place ifcflow relies on arq's internals: a worker that claims due jobs in one round trip.

Why: arq's ``Worker.start_jobs`` claims each job with its own optimistic transaction (``WATCH``,
``EXISTS``, ``ZSCORE``, ``MULTI PSETEX EXEC``) and reads only the first ``queue_read_limit`` due ids,
which include the jobs already running (arq keeps them queued until they end): 1,000 due jobs cost
4,000 sequential round trips, and a worker with free slots behind a busy one finds nothing to run.
``BatchClaimWorker`` claims up to its free slots in one script call that reads past running jobs
and records the claim's holder in the same step (``store.job_store.claim``), so a worker killed
right after a claim leaves nothing unowned.

It is used only by the explicit entry point ``python -m jobs`` (``run``); ``arq jobs.WorkerSettings``
runs arq's own ``Worker`` unchanged, which works the same, with arq's claims.

Tested with arq 0.28.0 (pyproject pins ``arq>=0.28,<0.29``). What it uses of arq beyond the public
``Worker`` signature, each checked by ``tests/test_arq_contract.py``:
- ``Worker.start_jobs(job_ids)``: overridden; called by ``_poll_iteration`` with the due ids it read.
- ``Worker.finish_job(...)``: wrapped so that its write is retried while Redis refuses writes.
- ``Worker.finish_failed_job(job_id, result_data)``: overridden to settle our record too; arq calls
  it when it fails a job without running it (expired, max tries, unknown function), and then skips
  the ``after_job_end`` hook.
- ``Worker.run_job(job_id, score)``, ``_release_sem_dec_counter_on_complete``, and the attributes
  ``sem``, ``job_counter``, ``max_jobs``, ``tasks``, ``queue_name``, ``in_progress_timeout_s``,
  ``loop``, ``ctx``, ``pool``: what ``start_jobs`` does per claimed job, as arq's own does.
"""

from __future__ import annotations

import time
from typing import Any

import arq.worker
import structlog

from jobs.persist import until_written
from settings import get_settings
from store import job_store

log = structlog.get_logger("jobs.worker")
_MAX_CLAIM_BACKOFF = 0.2

USED_METHODS = ("start_jobs", "finish_job", "finish_failed_job", "run_job", "_release_sem_dec_counter_on_complete")
USED_ATTRIBUTES = ("sem", "job_counter", "max_jobs", "tasks", "queue_name", "in_progress_timeout_s", "loop", "ctx")


class BatchClaimWorker(arq.worker.Worker):
    """arq's worker with one claim round trip per poll, reading past running jobs."""

    _claim_backoff = 0.0
    _claim_idle_until = 0.0

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Claim as many due jobs as there are free slots, in one script call, and start them.

        ``job_ids`` (arq's read of the queue head) only tells whether anything is due: the script
        reads the queue itself, past the jobs that run already."""
        free = self.max_jobs - self.job_counter
        if free <= 0 or not job_ids or time.monotonic() < self._claim_idle_until:
            return
        worker_id = self.ctx["worker_id"]
        in_progress_ms = int(self.in_progress_timeout_s * 1000)
        claimed = await job_store.claim(self.pool, get_settings(), self.queue_name, worker_id, free, in_progress_ms)
        if not claimed.jobs and claimed.waiting:
            # Due jobs wait for full services: polling on at full speed would only repeat the scan
            # past them. Back off (up to a fifth of a second); a try ending here ends the pause at
            # once, since its slot is what the waiting jobs need.
            self._claim_backoff = min(max(self._claim_backoff * 2, 0.01), _MAX_CLAIM_BACKOFF)
            self._claim_idle_until = time.monotonic() + self._claim_backoff
            return
        self._claim_backoff = 0.0
        for job_id, score in claimed.jobs:
            await self.sem.acquire()
            self.job_counter += 1
            task = self.loop.create_task(self.run_job(job_id, score))
            task.add_done_callback(self._job_done)
            self.tasks[job_id] = task

    def _job_done(self, _: object) -> None:
        self._release_sem_dec_counter_on_complete()
        self._claim_idle_until = 0.0

    async def finish_job(self, *args: Any, **kwargs: Any) -> None:
        """arq's own, retried until Redis takes it (a full Redis would otherwise stop the worker)."""
        await until_written("arq result", lambda: super(BatchClaimWorker, self).finish_job(*args, **kwargs))

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        """arq's own, then the record takes the failure arq stored (no hook runs on this path)."""
        await until_written("arq result", lambda: super(BatchClaimWorker, self).finish_failed_job(job_id, result_data))
        await until_written("job end", lambda: job_store.settle_from_arq(
            self.pool, get_settings(), job_id, self.ctx.get("worker_id", "")))


def run(settings_cls: type, **overrides: Any) -> BatchClaimWorker:
    """Run ``BatchClaimWorker`` with a ``WorkerSettings`` class, as ``arq.worker.run_worker`` does."""
    worker = BatchClaimWorker(**{**arq.worker.get_kwargs(settings_cls), **overrides})
    worker.run()
    return worker
