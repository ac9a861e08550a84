"""The one place ifcflow relies on arq's internals: a worker that claims due jobs in one round trip.

Why: arq's ``Worker.start_jobs`` claims each job with its own optimistic transaction (``WATCH``,
``EXISTS``, ``ZSCORE``, ``MULTI PSETEX EXEC``) and reads only the first ``queue_read_limit`` due ids,
which include the jobs already running (arq keeps them queued until they end): 1,000 due jobs cost
4,000 sequential round trips, and a worker with free slots behind a busy one finds nothing to run.
``BatchClaimWorker`` claims up to its free slots in one script call that reads past running jobs
and records the claim's holder in the same step (``store.job_store.claim``), so a worker killed
right after a claim leaves nothing unowned. While the queue holds more than it took, a try's end
claims again at once (one claim at a time, taking every slot freed by then), so a backlog's next job
starts one round trip after a slot frees, not at the next poll. A submit wakes the workers of its queue
(``store/keys.py``, WAKE; the listener in ``jobs/channels.py``), which claim at once too, so a new job
starts one message after its submit and the polls (``IFCFLOW_WOKEN_POLL_DELAY``, a quarter second by
default) are left only jobs that come due by time: retries after their backoff, deferred jobs and
those of dead workers.

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
- ``main_task`` and ``allow_pick_jobs``: a claim after a try's end is skipped once arq shuts down.
- ``ctx``: the worker's context dict, which ``on_startup`` receives: ``wake`` is put there before.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import arq.worker
import structlog

from jobs.persist import until_written
from settings import get_settings
from store import job_store

log = structlog.get_logger("jobs.worker")
_MAX_CLAIM_BACKOFF = 0.2
# Early claims (after a try's end or a wake-up) come at most this often: a lone submit is claimed at
# once, a burst of them in batches, as a poll would take them, instead of one small claim per submit.
_CLAIM_GAP = 0.01

USED_METHODS = ("start_jobs", "finish_job", "finish_failed_job", "run_job", "_release_sem_dec_counter_on_complete")
USED_ATTRIBUTES = (
    "sem", "job_counter", "max_jobs", "tasks", "queue_name", "in_progress_timeout_s", "loop", "ctx",
    "main_task", "allow_pick_jobs",
)


class BatchClaimWorker(arq.worker.Worker):
    """arq's worker with one claim round trip per poll, reading past running jobs, and a claim as soon
    as a try ends while the queue holds more."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._claim_backoff = 0.0
        self._claim_idle_until = 0.0
        # One claim at a time: two at once would both count the same free slots.
        self._claim_lock = asyncio.Lock()
        # Whether the last claim left due jobs behind (it filled every free slot, or some wait for a
        # full service): only then is a slot freed by a try's end worth a claim before the next poll.
        self._backlog = False
        self._early_claim: asyncio.Task[None] | None = None
        self._ended_meanwhile = False
        self._woken_meanwhile = False
        self._last_claim = 0.0
        self.ctx["wake"] = self._woken

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Claim as many due jobs as there are free slots, in one script call, and start them.

        ``job_ids`` (arq's read of the queue head) only tells whether anything is due: the script
        reads the queue itself, past the jobs that run already."""
        if job_ids:
            await self._claim_free_slots()

    async def _claim_free_slots(self) -> None:
        async with self._claim_lock:
            free = self.max_jobs - self.job_counter
            if free <= 0 or time.monotonic() < self._claim_idle_until:
                return
            self._last_claim = time.monotonic()
            worker_id = self.ctx["worker_id"]
            in_progress_ms = int(self.in_progress_timeout_s * 1000)
            claimed = await job_store.claim(self.pool, get_settings(), self.queue_name, worker_id, free, in_progress_ms)
            self._backlog = len(claimed.jobs) >= free or claimed.waiting > 0
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
        if self._backlog:
            self._claim_soon()

    def _woken(self) -> None:
        """A submit to this queue (``jobs/channels.py``): claim now. Also with no slot free, the next
        try's end claims, as with a backlog; a pause for full services ends, since this job may be for
        another service."""
        self._backlog = True
        self._claim_idle_until = 0.0
        self._woken_meanwhile = True  # a claim under way may have scanned before this submit
        self._claim_soon()

    def _claim_soon(self) -> None:
        if not self._picking():
            return
        if self._early_claim is not None:
            self._ended_meanwhile = True  # the claim under way may have counted before this slot freed
            return
        self._early_claim = self.loop.create_task(self._claim_after_try_end())

    def _picking(self) -> bool:
        """Not shutting down: arq stops picking jobs on a signal and cancels its main task."""
        main = self.main_task
        return self.allow_pick_jobs and main is not None and not main.done() and not main.cancelling()

    async def _claim_after_try_end(self) -> None:
        """Fill the slots freed by tries' ends, or take a submitted job, now, not at the next poll: a
        backlog's next job starts one round trip after a slot frees, as a blocking pop's would.
        Coalesced: at most one such claim runs at a time, and it takes every slot freed by then; ends
        and wake-ups during it make it go once more."""
        try:
            while True:
                self._ended_meanwhile = self._woken_meanwhile = False
                # Let the other tries ending in this loop turn free their slots first (and, in a burst,
                # the submits of the next few milliseconds arrive): one claim for all.
                await asyncio.sleep(max(self._last_claim + _CLAIM_GAP - time.monotonic(), 0.0))
                await self._claim_free_slots()
                again = self._woken_meanwhile or (self._ended_meanwhile and self._backlog)
                if not (again and self._picking()):
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis trouble: the poll loop claims instead, and reports it
            log.warning("claim.after_try_end_failed", error=repr(exc))
        finally:
            self._early_claim = None

    async def finish_job(self, *args: Any, **kwargs: Any) -> None:
        """arq's own, retried until Redis takes it (a full Redis would otherwise stop the worker)."""
        await until_written("arq result", lambda: super(BatchClaimWorker, self).finish_job(*args, **kwargs))

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        """arq's own, then the record takes the failure arq stored (no hook runs on this path)."""
        await until_written("arq result", lambda: super(BatchClaimWorker, self).finish_failed_job(job_id, result_data))
        await until_written("job end", lambda: job_store.settle_from_arq(
            self.pool, get_settings(), job_id, self.ctx.get("worker_id", "")))


def run(settings_cls: type, **overrides: Any) -> BatchClaimWorker:
    """Run ``BatchClaimWorker`` with a ``WorkerSettings`` class, as ``arq.worker.run_worker`` does,
    polling every ``IFCFLOW_WOKEN_POLL_DELAY``: submits wake it."""
    kwargs = {**arq.worker.get_kwargs(settings_cls), "poll_delay": get_settings().woken_poll_delay, **overrides}
    worker = BatchClaimWorker(**kwargs)
    worker.run()
    return worker
