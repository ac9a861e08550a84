"""Fair share between projects in one queue (store/lua/claim.lua): the claim script against a real Redis,
and a real ``python -m jobs`` worker behind a backlog of 10,000 jobs of one project."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from contracts.operations import Operation
from contracts.wire import JOB_ID_HEADER
from settings import Settings
from store import job_store, keys
from store.job_store import NewJob, TryEnd
from tests.conftest import WORKER_COMMAND, Behaviour, start_worker

CONVERT = {"input_filename": "uploads/model.ifc", "output_filename": "output/ifcconvert/m.glb"}
AGING_S = 60.0


@pytest.fixture
def settings(redis_url: str, tmp_path: Any) -> Settings:
    return Settings(redis_url=redis_url, data_dir=tmp_path, result_ttl=600, priority_aging=AGING_S)


def job(job_id: str, project: str, priority: Any = "normal", **options: Any) -> NewJob:
    return NewJob(Operation.ifcconvert, CONVERT, job_id, priority=priority, project=project, fresh_id=True, **options)


async def make(aredis: Redis, settings: Settings, jobs: list[NewJob]) -> None:
    for start in range(0, len(jobs), 2000):  # pipelined: 10,000 jobs in about a second
        made = await job_store.create_many(aredis, settings, jobs[start:start + 2000])
        assert made == [True] * len(made), [m for m in made if m is not True][:1]


async def claim(aredis: Redis, settings: Settings, free: int, worker: str = "w") -> list[str]:
    return [j for j, _ in (await job_store.claim(aredis, settings, settings.queue_name, worker, free, 60_000)).jobs]


async def indexed(aredis: Redis, settings: Settings, project: str) -> list[str]:
    return [m.decode() for m in await aredis.zrange(keys.fair_index(settings.queue_name, project), 0, -1)]


async def projects(aredis: Redis, settings: Settings) -> set[str]:
    return {m.decode() for m in await aredis.smembers(keys.fair_projects(settings.queue_name))}  # type: ignore[misc]


async def ended_by_arq(aredis: Redis, settings: Settings, job_id: str, retry_in_ms: int | None = None) -> None:
    """What arq's finish_job leaves: no in-progress key, and the job off its queue, or (a retry) still
    on it with its score moved by the delay."""
    await aredis.delete(keys.ARQ_IN_PROGRESS + job_id)
    if retry_in_ms is None:
        await aredis.delete(keys.ARQ_JOB + job_id)
        await aredis.zrem(settings.queue_name, job_id)
    else:
        score = await aredis.zscore(settings.queue_name, job_id)
        assert score is not None
        await aredis.zincrby(settings.queue_name, retry_in_ms + job_store.now_ms() - score, job_id)


async def test_a_job_of_b_is_claimed_at_the_next_free_slot_behind_ten_thousand_of_a_in_a_few_commands(
    aredis, settings
):
    await make(aredis, settings, [job(f"a{i:05}", "A") for i in range(10_000)])
    assert await claim(aredis, settings, 4) == ["a00000", "a00001", "a00002", "a00003"]
    await make(aredis, settings, [job("b", "B")])
    await aredis.config_resetstat()
    assert await claim(aredis, settings, 1) == ["b"]
    stats = await aredis.info("commandstats")
    commands = sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_evalsha", "cmdstat_config"))
    assert commands < 100, stats  # a claim reads the projects' heads, never the backlog
    assert await claim(aredis, settings, 2) == ["a00004", "a00005"]


async def test_two_projects_with_equal_backlogs_are_served_alternately(aredis, settings):
    await make(aredis, settings, [job(f"a{i:02}", "A") for i in range(30)])
    await make(aredis, settings, [job(f"b{i:02}", "B") for i in range(30)])
    claimed: list[str] = []
    for free in (1, 3, 2, 5, 1, 4, 6, 2):  # K = 24 claims, in batches of any size
        claimed += await claim(aredis, settings, free)
        a, b = sum(j[0] == "a" for j in claimed), sum(j[0] == "b" for j in claimed)
        assert abs(a - b) <= 1, claimed
    assert len(claimed) == 24
    # Inside each project, queue order.
    assert [j for j in claimed if j[0] == "a"] == [f"a{i:02}" for i in range(12)]
    assert [j for j in claimed if j[0] == "b"] == [f"b{i:02}" for i in range(12)]


async def test_a_high_job_of_one_project_beats_normal_jobs_of_a_project_served_less_recently(aredis, settings):
    await make(aredis, settings, [job(f"a{i}", "A") for i in range(5)] + [job(f"b{i}", "B") for i in range(5)])
    assert await claim(aredis, settings, 1) == ["a0"]  # never served either: the older head
    await make(aredis, settings, [job("a-high", "A", "high")])
    assert await claim(aredis, settings, 3) == ["a-high", "b0", "a1"]


async def test_a_low_job_counts_as_normal_against_other_projects_once_it_waited_past_the_aging(aredis, settings):
    await make(aredis, settings, [job("a-low", "A", "low")] + [job(f"b{i}", "B") for i in range(5)])
    assert await claim(aredis, settings, 2) == ["b0", "b1"]  # a low head loses to normal ones
    await aredis.hset(keys.job_meta("a-low"), "enqueued_at", str(job_store.now_ms() - int(AGING_S * 1000) - 1))
    assert await claim(aredis, settings, 2) == ["a-low", "b2"]  # aged: a normal head, of the project served last


async def test_inside_a_project_the_claim_order_is_arqs_queue_order(aredis, settings):
    # Priorities and aging inside a project work as before: the queue's score order, whatever the
    # other project does.
    mixed = ("high", "low", "normal", "low", "normal", "high", "normal", "low")
    await make(aredis, settings, [job(f"a{i}", "A", p) for i, p in enumerate(mixed)])
    await make(aredis, settings, [job(f"b{i}", "B", p) for i, p in enumerate(reversed(mixed))])
    late = job_store.now_ms() - int(AGING_S * 1000) * 3  # waited three agings: ahead of every newer high job
    await aredis.zadd(settings.queue_name, {"a3": late})
    await aredis.zadd(keys.fair_index(settings.queue_name, "A"), {"a3": late})
    order = [m.decode() for m in await aredis.zrange(settings.queue_name, 0, -1)]
    claimed = [j for _ in range(16) for j in await claim(aredis, settings, 1)]
    for project in "ab":
        assert [j for j in claimed if j[0] == project] == [j for j in order if j[0] == project]
    assert next(j for j in claimed if j[0] == "a") == "a3"


async def test_with_one_project_the_claim_order_is_arqs_queue_order(aredis, settings):
    mixed = ("low", "normal", "high", "normal", "low", "high")
    await make(aredis, settings, [job(f"j{i}", "default", p) for i, p in enumerate(mixed)])
    order = [m.decode() for m in await aredis.zrange(settings.queue_name, 0, -1)]
    assert await claim(aredis, settings, 2) + await claim(aredis, settings, 10) == order


async def test_jobs_in_arqs_queue_without_an_index_entry_are_claimed_as_project_default(aredis, settings):
    # Jobs of arq's own API (no record) and a job recorded before projects (no project field, no index).
    for i in range(2):
        assert await aredis.enqueue_job("ifcconvert", _job_id=f"arq{i}", _queue_name=settings.queue_name)
    await make(aredis, settings, [job("old", "default"), job("d", "default"), job("a", "A")])
    await aredis.hdel(keys.job_meta("old"), "project")
    await aredis.zrem(keys.fair_index(settings.queue_name, "default"), "old")
    claimed = await claim(aredis, settings, 10)
    assert sorted(claimed) == ["a", "arq0", "arq1", "d", "old"]
    # arq's enqueues score jobs at their submit time; ifcflow's normal ones sit one aging ahead.
    assert claimed[-2:] == ["arq0", "arq1"]
    assert await indexed(aredis, settings, "default") == [] and await indexed(aredis, settings, "A") == []


async def test_cancel_retry_requeue_and_reap_keep_the_index_consistent(aredis, settings):
    await make(aredis, settings, [job(f"a{i}", "A") for i in range(4)])
    assert await job_store.cancel(aredis, settings, "a0") == "cancelled"
    assert await indexed(aredis, settings, "A") == ["a1", "a2", "a3"]

    # A claimed job leaves the index; its retry puts it back with arq's score, claimable again when due.
    assert await claim(aredis, settings, 1) == ["a1"]
    assert await indexed(aredis, settings, "A") == ["a2", "a3"]
    await job_store.start(aredis, "a1", "w", 1)
    await ended_by_arq(aredis, settings, "a1", retry_in_ms=0)
    await job_store.finish(aredis, settings, "a1", "w", 1, Operation.ifcconvert, TryEnd("retry", retry_reason="x"))
    index = keys.fair_index(settings.queue_name, "A")
    assert await aredis.zscore(index, "a1") == await aredis.zscore(settings.queue_name, "a1")
    assert await claim(aredis, settings, 5) == ["a2", "a3", "a1"]

    # Jobs that end leave nothing behind; the project leaves the set of projects with waiting jobs.
    for j in ("a2", "a3"):
        await job_store.start(aredis, j, "w", 1)
        await ended_by_arq(aredis, settings, j)
        await job_store.finish(aredis, settings, j, "w", 1, Operation.ifcconvert, TryEnd("complete", result={}))
    assert await indexed(aredis, settings, "A") == [] and await projects(aredis, settings) == set()

    # a1's worker dies: handed back, it is waiting again, in its index.
    await aredis.zadd(keys.WORKERS, {"w": job_store.now_ms() - 60_000})
    assert await job_store.reap_dead_workers(aredis, settings, 15) == ["a1"]
    assert await indexed(aredis, settings, "A") == ["a1"] and await projects(aredis, settings) == {"A"}

    # It fails for good; a requeue brings it back.
    assert await claim(aredis, settings, 1, worker="v") == ["a1"]
    await job_store.start(aredis, "a1", "v", 2)
    await ended_by_arq(aredis, settings, "a1")
    await job_store.finish(aredis, settings, "a1", "v", 2, Operation.ifcconvert, TryEnd("failed"))
    assert await indexed(aredis, settings, "A") == []
    assert await job_store.requeue(aredis, settings, "a1") == "requeued"
    assert await indexed(aredis, settings, "A") == ["a1"]
    assert await job_store.cancel(aredis, settings, "a1") == "cancelled"
    assert await indexed(aredis, settings, "A") == [] and await projects(aredis, settings) == set()


async def test_a_job_started_by_arqs_own_claim_leaves_its_index_at_its_start(aredis, settings):
    await make(aredis, settings, [job("a", "A"), job("b", "A")])
    await aredis.psetex(keys.ARQ_IN_PROGRESS + "a", 60_000, "1")  # arq's claim: its in-progress key
    await job_store.start(aredis, "a", "w", 1)
    assert await indexed(aredis, settings, "A") == ["b"]
    assert await claim(aredis, settings, 5) == ["b"]


# --- end to end: a real worker, jobs that take a set time ------------------------------------------------


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)  # the stand-in service runs on this loop


async def test_a_job_of_b_starts_within_one_slot_turnover_behind_ten_thousand_jobs_of_a(
    aredis, settings, env, tmp_path, sync_redis, stub
):
    slots = 4
    stub.default = Behaviour(delay=0.3)
    await make(aredis, settings, [job(f"a{i:05}", "A") for i in range(10_000)])
    worker = start_worker({**env, "IFCFLOW_MAX_JOBS": str(slots)}, tmp_path / "w.log", sync_redis,
                          command=WORKER_COMMAND)
    try:
        await wait_until(lambda: len(stub.calls) >= 2 * slots, 30, "the worker never ran A's jobs")
        before = len(stub.calls)
        await make(aredis, settings, [job("b", "B")])

        def ids() -> list[str]:
            return [c["headers"].get(JOB_ID_HEADER) for c in stub.calls]

        await wait_until(lambda: "b" in ids(), 30, "B's job never started")
        a_between = ids().index("b") - before
    finally:
        worker.stop()
    assert a_between <= slots, a_between  # at most one turnover of the slots


async def test_a_worker_serves_two_projects_with_equal_backlogs_alternately(
    aredis, settings, env, tmp_path, sync_redis, stub
):
    stub.default = Behaviour(delay=0.02)
    await make(aredis, settings, [job(f"a{i:02}", "A") for i in range(20)] + [job(f"b{i:02}", "B") for i in range(20)])
    worker = start_worker({**env, "IFCFLOW_MAX_JOBS": "1"}, tmp_path / "w.log", sync_redis, command=WORKER_COMMAND)
    try:
        await wait_until(lambda: len(stub.calls) >= 12, 30, "the worker ran too few jobs")
    finally:
        worker.stop()
    started = [c["headers"].get(JOB_ID_HEADER) or "" for c in stub.calls][:12]
    for k in range(1, 13):
        a = sum(j.startswith("a") for j in started[:k])
        assert abs(a - (k - a)) <= 1, started
