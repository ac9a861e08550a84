"""Workers claim due jobs in batches (jobs/claims.py): same guarantees as arq's one-at-a-time claims."""

from __future__ import annotations

import asyncio
import time

import arq.worker
import pytest
from redis.asyncio import Redis

from contracts.wire import JOB_ID_HEADER
from jobs.claims import BatchClaimWorker, claim, install
from store import keys
from tests.conftest import CONVERT, Behaviour, start_worker, submit

QUEUE = "claims-test"


@pytest.fixture
async def aredis(redis_url: str):
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_a_claim_takes_only_due_jobs_nobody_runs_and_stops_at_the_limit(aredis: Redis):
    now = int(time.time() * 1000)
    await aredis.zadd(QUEUE, {"due-1": now - 10, "due-2": now - 5, "later": now + 60_000, "running": now - 20,
                              "due-3": now - 1})
    await aredis.set(keys.ARQ_IN_PROGRESS + "running", b"1")
    ids = [b"running", b"due-1", b"gone", b"due-2", b"later", b"due-3"]

    claimed = await claim(aredis, QUEUE, ids, limit=2, in_progress_ms=30_000)

    assert claimed == [("due-1", now - 10), ("due-2", now - 5)]
    assert 0 < await aredis.pttl(keys.ARQ_IN_PROGRESS + "due-1") <= 30_000
    assert not await aredis.exists(keys.ARQ_IN_PROGRESS + "later", keys.ARQ_IN_PROGRESS + "due-3")
    # The next poll gets what is left, and nothing twice.
    assert await claim(aredis, QUEUE, ids, limit=10, in_progress_ms=30_000) == [("due-3", now - 1)]
    assert await claim(aredis, QUEUE, ids, limit=10, in_progress_ms=30_000) == []


def test_the_worker_settings_make_arq_build_the_batch_claiming_worker(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(arq.worker, "Worker", arq.worker.Worker)  # undone after the test
    install()
    assert arq.worker.Worker is BatchClaimWorker
    # arq passes the settings its own signature names: the subclass must not hide that signature.
    assert "max_jobs" in __import__("inspect").signature(arq.worker.Worker).parameters


async def test_two_workers_sharing_a_queue_run_every_job_exactly_once(api, env, tmp_path, sync_redis, stub):
    # 20 slots each and 0.2 s per job: neither can take every job, so both contend for the same ids.
    env = {**env, "IFCFLOW_MAX_JOBS": "20"}
    stub.default = Behaviour(delay=0.2)
    workers = [start_worker(env, tmp_path / f"w{i}.log", sync_redis) for i in range(2)]
    try:
        ids = await asyncio.gather(*(submit(api, "/ifcconvert", CONVERT) for _ in range(300)))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            done = sum(1 for j in ids if sync_redis.exists(keys.ARQ_RESULT + j))
            if done == len(ids):
                break
            await asyncio.sleep(0.1)
        assert done == len(ids)
        # One try and one service call per job: no job was claimed by both workers.
        called = [c["headers"].get(JOB_ID_HEADER) for c in stub.calls]
        assert sorted(called) == sorted(ids)
        views = [(await api.get(f"/jobs/{j}")).json() for j in ids]
        assert {(v["status"], v["tries"]) for v in views} == {("complete", 1)}
        # Both took part.
        assert all(any(e.get("event") == "job.completed" for e in w.log_lines()) for w in workers)
    finally:
        for w in workers:
            w.stop()
