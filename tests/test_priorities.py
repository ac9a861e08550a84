"""Priorities on one queue and one worker pool: real gateway, real worker, real Redis."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.conftest import CONVERT, start_worker

AGING = 0.5  # seconds a waiting job moves ahead per priority level (IFCFLOW_PRIORITY_AGING)


def one_at_a_time(env, **more):
    """The worker's environment: one job at a time, so the order jobs start in is the order of the queue."""
    return {**env, "IFCFLOW_MAX_JOBS": "1", **more}


async def submit_many(api, n, priority, concurrency=50):
    sem = asyncio.Semaphore(concurrency)

    async def one():
        async with sem:
            r = await api.post("/ifcconvert", json={**CONVERT, "priority": priority})
            assert r.status_code == 202, r.text
            return r.json()["job_id"]

    return await asyncio.gather(*(one() for _ in range(n)))


async def wait_done(api, ids, timeout=60.0):
    deadline = time.monotonic() + timeout
    views = {}
    while time.monotonic() < deadline:
        views = {j: (await api.get(f"/jobs/{j}")).json() for j in ids}
        if all(v["status"] == "complete" for v in views.values()):
            return views
        await asyncio.sleep(0.1)
    raise AssertionError([v["status"] for v in views.values()])


async def test_a_high_job_behind_a_thousand_normal_ones_starts_first(api, env, tmp_path, sync_redis, stub):
    await submit_many(api, 1000, "normal")
    [high] = await submit_many(api, 1, "high")
    worker = start_worker(one_at_a_time(env), tmp_path / "w.log", sync_redis)
    try:
        [view] = (await wait_done(api, [high])).values()

        async def normal_ones_done():
            done = (await api.get("/jobs", params={"status": "complete", "limit": 200})).json()["jobs"]
            return [v for v in done if v["job_id"] != high]

        deadline = time.monotonic() + 30
        while not (started_normal := await normal_ones_done()):  # normal jobs run too, after the high one
            assert time.monotonic() < deadline, "no normal job ran"
            await asyncio.sleep(0.05)
        assert all(view["started_at"] <= v["started_at"] for v in started_normal)
    finally:
        worker.stop()


async def test_low_jobs_wait_for_normal_ones(api, env, tmp_path, sync_redis, stub):
    low = await submit_many(api, 5, "low")
    normal = await submit_many(api, 5, "normal")
    worker = start_worker(one_at_a_time(env), tmp_path / "w.log", sync_redis)
    try:
        views = await wait_done(api, low + normal)
    finally:
        worker.stop()
    last_normal = max(views[j]["started_at"] for j in normal)
    first_low = min(views[j]["started_at"] for j in low)
    assert last_normal <= first_low


@pytest.fixture
def short_aging(env):
    env["IFCFLOW_PRIORITY_AGING"] = str(AGING)  # the gateway scores jobs by it: a gateway of the test's own


async def test_a_low_job_waiting_longer_than_the_aging_is_served_before_new_normal_ones(
    short_aging, api, env, tmp_path, sync_redis, stub
):
    [low] = await submit_many(api, 1, "low")
    await asyncio.sleep(AGING * 1.5)  # the waiting under test: the low job gets older than the aging
    normal = await submit_many(api, 5, "normal")
    worker = start_worker(one_at_a_time(env), tmp_path / "w.log", sync_redis)
    try:
        views = await wait_done(api, [low, *normal])
    finally:
        worker.stop()
    assert views[low]["started_at"] <= min(views[j]["started_at"] for j in normal)


async def test_an_unknown_priority_is_refused(api):
    r = await api.post("/ifcconvert", json={**CONVERT, "priority": "urgent"})
    assert r.status_code == 422 and "priority" in r.text
