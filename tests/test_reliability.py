"""Crashes, restarts and arq's known traps: nothing is lost, nothing waits for arq's long TTLs."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest
import redis

from tests.conftest import (
    API_KEY,
    CONVERT,
    TERMINAL,
    Behaviour,
    eventually,
    free_port,
    start_gateway,
    start_redis,
    start_worker,
    submit,
    until,
)


@pytest.fixture
def fast_death(env):
    env["IFCFLOW_WORKER_DEAD_AFTER"] = "2"


def runner_of(job_id, *workers):
    for w in workers:
        if any(e.get("event") == "job.started" and e.get("job_id") == job_id for e in w.log_lines()):
            return w
    return None


async def test_a_job_on_a_sigkilled_worker_runs_again_within_seconds_despite_a_2h_clash_timeout(
    fast_death, api, env, tmp_path, sync_redis, stub
):
    # The worker serves clash (7200 s timeout): arq alone would leave the job stuck for over two hours.
    stub.will("/ifcconvert", Behaviour(delay=60), Behaviour(body={"ok": "second try"}))
    a = start_worker(env, tmp_path / "a.log", sync_redis, live=1)
    b = start_worker(env, tmp_path / "b.log", sync_redis, live=2)
    try:
        job_id = await submit(api)
        # Killed inside the slow call (not merely once it shows in_progress): the rerun gets the quick answer.
        await eventually(lambda: stub.calls_to("/ifcconvert"), 10, what="the job's service call")
        victim = await eventually(lambda: runner_of(job_id, a, b), 10, what="the job.started line")
        killed_at = time.monotonic()
        victim.proc.send_signal(signal.SIGKILL)
        view = await until(api, job_id, TERMINAL, timeout=30)
        recovered_in = time.monotonic() - killed_at
        assert view["status"] == "complete" and view["result"] == {"ok": "second try"}
        assert view["tries"] == 2
        assert recovered_in < 30
        survivor = b if victim is a else a
        assert any(e.get("event") == "worker.dead_jobs_handed_back" for e in survivor.log_lines())
    finally:
        a.stop()
        b.stop()


async def test_sigterm_lets_a_running_job_finish_and_runs_it_only_once(api, env, tmp_path, sync_redis, stub):
    stub.will("/ifcconvert", Behaviour(delay=2, body={"ok": 1}))
    w = start_worker({**env, "IFCFLOW_SHUTDOWN_WAIT": "20"}, tmp_path / "w.log", sync_redis)
    try:
        job_id = await submit(api)
        await until(api, job_id, {"in_progress"})
        w.proc.send_signal(signal.SIGTERM)
        view = await until(api, job_id, TERMINAL)
        assert view["status"] == "complete"
        await eventually(lambda: w.proc.poll() is not None, 10, what="the worker to exit")
        assert len(stub.calls_to("/ifcconvert")) == 1
    finally:
        w.stop()


async def test_sigterm_past_the_wait_hands_the_job_back_for_the_next_worker(api, env, tmp_path, sync_redis, stub):
    stub.will("/ifcconvert", Behaviour(delay=60), Behaviour(body={"ok": 2}))
    w = start_worker({**env, "IFCFLOW_SHUTDOWN_WAIT": "1"}, tmp_path / "w.log", sync_redis)
    job_id = await submit(api)
    await until(api, job_id, {"in_progress"})
    w.proc.send_signal(signal.SIGTERM)
    await eventually(lambda: w.proc.poll() is not None, 10, what="the worker to exit")
    w.stop()
    assert (await api.get(f"/jobs/{job_id}")).json()["status"] == "queued"
    w2 = start_worker(env, tmp_path / "w2.log", sync_redis)
    try:
        view = await until(api, job_id, TERMINAL)
        assert view["status"] == "complete" and view["result"] == {"ok": 2}
    finally:
        w2.stop()


async def test_requeue_after_an_abort_runs_the_job_instead_of_aborting_it_again(api, worker, stub, sync_redis):
    stub.will("/ifcconvert", Behaviour(delay=30))
    job_id = await submit(api)
    # The call under way, not just the claim: an abort before it would leave the 30 s answer to the requeue.
    await eventually(lambda: stub.in_flight, what="the first try's service call")
    await api.delete(f"/jobs/{job_id}")
    assert (await until(api, job_id, TERMINAL))["status"] == "aborted"
    # arq issue 485: an abort request left in arq:abort cancels a later job with the same id.
    sync_redis.zadd("arq:abort", {job_id: int(time.time() * 1000)})
    r = await api.post(f"/jobs/{job_id}/requeue")
    assert r.status_code == 202
    view = await until(api, job_id, TERMINAL)
    assert view["status"] == "complete", view


async def test_requeue_works_while_arq_still_holds_the_old_result(api, worker, stub, sync_redis):
    # arq's enqueue_job returns None while a result exists for the id; requeue must not be swallowed.
    stub.will("/ifcconvert", Behaviour(status=400, body={"detail": "bad"}), Behaviour(body={"ok": 3}))
    job_id = await submit(api)
    assert (await until(api, job_id, TERMINAL))["status"] == "failed"
    assert sync_redis.exists(f"arq:result:{job_id}")
    await api.post(f"/jobs/{job_id}/requeue")
    assert (await until(api, job_id, TERMINAL))["result"] == {"ok": 3}


async def test_failed_jobs_keep_their_result_as_long_as_successful_ones(api, worker, stub, sync_redis, env):
    stub.will("/ifcconvert", Behaviour(status=400, body={"detail": "bad"}), Behaviour())
    failed = await submit(api)
    ok = await submit(api)
    await until(api, failed, TERMINAL)
    await until(api, ok, TERMINAL)
    ttl_failed = sync_redis.pttl(f"arq:result:{failed}")
    ttl_ok = sync_redis.pttl(f"arq:result:{ok}")
    assert abs(ttl_failed - ttl_ok) < 5000 and ttl_ok > 80_000_000


async def test_a_redis_restart_is_ridden_out_by_gateway_and_worker(env, tmp_path, stub):
    port = free_port()
    redis_dir = tmp_path / "redis-aof"
    redis_dir.mkdir()
    server = start_redis(port, redis_dir, "--appendonly", "yes", "--appendfsync", "always")
    env["IFCFLOW_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis(port=port)
    gateway = start_gateway(env, tmp_path / "gateway.log")
    worker = None
    try:
        async with httpx.AsyncClient(base_url=gateway.url, headers={"X-API-Key": API_KEY}, timeout=10) as api:
            queued = await submit(api)  # queued before the outage, with no worker yet
            server.terminate()
            server.wait(10)
            started = time.monotonic()
            r = await api.post("/ifcconvert", json=CONVERT)
            assert r.status_code == 503 and "Redis" in r.json()["detail"]
            assert time.monotonic() - started < 5  # answers, never hangs
            assert (await api.get("/health")).status_code == 503
            server = start_redis(port, redis_dir, "--appendonly", "yes", "--appendfsync", "always")
            worker = start_worker(env, tmp_path / "worker.log", client)
            assert (await until(api, queued, TERMINAL))["status"] == "complete"  # survived the restart
            # Now restart under the running worker: it reconnects by itself.
            server.terminate()
            server.wait(10)
            await asyncio.sleep(1)  # the outage under test: Redis stays away while the worker polls
            server = start_redis(port, redis_dir, "--appendonly", "yes", "--appendfsync", "always")
            after = await submit(api)
            assert (await until(api, after, TERMINAL))["status"] == "complete"
            assert worker.proc.poll() is None
    finally:
        if worker:
            worker.stop()
        gateway.process.stop()
        server.terminate()
        server.wait(10)
