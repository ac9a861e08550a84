"""Workers claim jobs in batches (``python -m jobs``) or one by one (``arq jobs.WorkerSettings``, arq's own
claims): every job runs exactly once either way, and a fleet keeps all its slots busy."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator

from contracts.wire import JOB_ID_HEADER
from tests.conftest import CONVERT, Behaviour, start_worker, submit, until

BATCH = [sys.executable, "-m", "jobs"]
STOCK = [sys.executable, "-m", "arq", "jobs.WorkerSettings"]


async def run_all(api, ids: list[str], timeout: float = 90) -> list[dict]:
    return list(await asyncio.gather(*(until(api, j, timeout=timeout) for j in ids)))


@contextlib.contextmanager
def two_workers(env, tmp_path, sync_redis, command: list[str]) -> Iterator[list]:
    workers = [start_worker(env, tmp_path / f"w{i}.log", sync_redis, live=i + 1, command=command) for i in range(2)]
    try:
        yield workers
    finally:
        for w in workers:
            w.stop()


async def test_two_batch_claiming_workers_keep_both_their_slots_full_and_run_each_job_once(
    api, env, tmp_path, sync_redis, stub
):
    # 10 slots each, 60 jobs of 1 s: the fleet must hold 20 in flight, although the first ids of the queue
    # are always jobs the other worker runs already.
    env = {**env, "IFCFLOW_MAX_JOBS": "10"}
    stub.default = Behaviour(delay=1.0)
    with two_workers(env, tmp_path, sync_redis, BATCH) as workers:
        ids = await asyncio.gather(*(submit(api, "/ifcconvert", CONVERT) for _ in range(60)))
        views = await run_all(api, ids)
        assert {(v["status"], v["tries"]) for v in views} == {("complete", 1)}
        assert stub.max_in_flight == 20
        called = [c["headers"].get(JOB_ID_HEADER) for c in stub.calls]
        assert sorted(called) == sorted(ids)  # one service call per job: no job claimed twice
        assert all(any(e.get("event") == "job.completed" for e in w.log_lines()) for w in workers)


async def test_arqs_own_worker_runs_the_same_jobs_with_arqs_claims(api, env, tmp_path, sync_redis, stub):
    env = {**env, "IFCFLOW_MAX_JOBS": "20"}
    stub.default = Behaviour(delay=0.1)
    with two_workers(env, tmp_path, sync_redis, STOCK):
        ids = await asyncio.gather(*(submit(api, "/ifcconvert", CONVERT) for _ in range(100)))
        views = await run_all(api, ids)
        assert {(v["status"], v["tries"]) for v in views} == {("complete", 1)}
        assert sorted(c["headers"].get(JOB_ID_HEADER) for c in stub.calls) == sorted(ids)
        assert all(v["result"] == stub.default.body for v in views)


async def test_a_slot_freed_by_a_try_end_takes_the_next_queued_job_without_waiting_for_a_poll(
    api, env, tmp_path, sync_redis, stub
):
    # Polls 10 s apart, 2 slots, 6 jobs queued before the worker starts: its first poll claims two, and
    # every other job must start when a try ends, long before the second poll.
    env = {**env, "IFCFLOW_MAX_JOBS": "2", "IFCFLOW_WOKEN_POLL_DELAY": "10"}
    stub.default = Behaviour(delay=0.2)
    ids = await asyncio.gather(*(submit(api, "/ifcconvert", CONVERT) for _ in range(6)))
    worker = start_worker(env, tmp_path / "w.log", sync_redis, command=BATCH)
    try:
        views = await run_all(api, ids, timeout=8)
    finally:
        worker.stop()
    assert {(v["status"], v["tries"]) for v in views} == {("complete", 1)}
    assert stub.max_in_flight == 2


async def test_a_submit_wakes_an_idle_worker_which_starts_the_job_without_waiting_for_a_poll(
    api, env, tmp_path, sync_redis, stub
):
    # Polls 10 s apart: a worker past its first poll finds each new job only because its submit woke it,
    # also while its slots are full (the wake-up is kept for the next try's end) and for a requeue.
    env = {**env, "IFCFLOW_MAX_JOBS": "1", "IFCFLOW_WOKEN_POLL_DELAY": "10"}
    stub.default = Behaviour(delay=0.3)
    worker = start_worker(env, tmp_path / "w.log", sync_redis, command=BATCH)
    try:
        first = await submit(api, "/ifcconvert", CONVERT)
        assert (await until(api, first, timeout=5))["status"] == "complete"
        ids = await asyncio.gather(*(submit(api, "/ifcconvert", CONVERT) for _ in range(3)))
        views = await run_all(api, ids, timeout=6)
        assert {(v["status"], v["tries"]) for v in views} == {("complete", 1)}
        stub.default = Behaviour(status=400)  # a permanent failure, then a requeue that succeeds
        failed = await submit(api, "/ifcconvert", CONVERT)
        assert (await until(api, failed, timeout=5))["status"] == "failed"
        stub.default = Behaviour(delay=0.0)
        response = await api.post(f"/jobs/{failed}/requeue")
        assert response.status_code == 202, response.text
        assert (await until(api, failed, ("complete",), timeout=5))["status"] == "complete"
    finally:
        worker.stop()
    assert stub.max_in_flight == 1
