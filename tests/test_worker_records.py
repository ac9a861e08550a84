"""A real worker keeps each job's record true through arq's hooks, with either claim path."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from contracts.operations import Operation
from settings import Settings
from store import job_store, keys
from store.job_store import NewJob
from tests.conftest import Behaviour, Process, wait_for

COMMANDS = {"batch": [sys.executable, "-m", "jobs"], "stock": [sys.executable, "-m", "arq", "jobs.WorkerSettings"]}
REQUEST = {"input_filename": "uploads/model.ifc", "output_filename": "output/ifcconvert/m.glb"}


@pytest.fixture
async def aredis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(params=sorted(COMMANDS))
def any_worker(request, env, tmp_path, sync_redis):
    proc = Process(COMMANDS[request.param], env, tmp_path / "worker.log")
    wait_for(lambda: sync_redis.zcard(keys.WORKERS) >= 1 or proc.proc.poll() is not None, what="worker")
    assert proc.proc.poll() is None, proc.log_path.read_text()
    yield proc
    proc.stop()


async def settle(aredis: Redis, job_id: str, statuses: set[str], timeout: float = 20) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    rec: dict[str, str] = {}
    while time.monotonic() < deadline:
        rec = await job_store.record_of(aredis, job_id)
        if rec.get("status") in statuses:
            return rec
        await asyncio.sleep(0.02)
    raise AssertionError(f"{job_id} never reached {statuses}: {rec}")


async def enqueue(aredis: Redis, env: dict[str, str], job_id: str, data_dir: Path) -> None:
    settings = Settings(redis_url=env["IFCFLOW_REDIS_URL"], data_dir=data_dir)
    assert await job_store.create(aredis, settings, NewJob(Operation.ifcconvert, REQUEST, job_id, "req-9"))


async def test_a_job_goes_queued_in_progress_complete_in_its_record_and_leaves_its_worker(
    any_worker, aredis, env, stub, data_dir
):
    stub.default = Behaviour(delay=0.3, body={"output_files": ["output/ifcconvert/m.glb"]})
    await enqueue(aredis, env, "j-ok", data_dir)
    running = await settle(aredis, "j-ok", {"in_progress", "complete"})
    assert running["status"] == "in_progress" and running["worker"]
    done = await settle(aredis, "j-ok", {"complete"})
    assert "worker" not in done and done["tries"] == "1"
    view = await job_store.get(aredis, "j-ok")
    assert view is not None and view.result == {"output_files": ["output/ifcconvert/m.glb"]}
    assert await aredis.hget(keys.STATS_COUNTS, "ifcconvert:completed") == b"1"
    assert not [k for k in await aredis.keys(keys.WORKER_JOBS + "*") if await aredis.sismember(k, "j-ok")]
    started = [e for e in any_worker.log_lines() if e.get("event") == "job.started"]
    assert started and started[0]["job_id"] == "j-ok" and started[0]["request_id"] == "req-9"


async def test_a_busy_service_is_retried_and_a_client_error_fails_at_once(any_worker, aredis, env, stub, data_dir):
    path = "/ifcconvert"
    stub.will(path, Behaviour(status=503, body={"error": {"type": "busy", "message": "all slots taken"}}),
              Behaviour(status=200))
    await enqueue(aredis, env, "j-retry", data_dir)
    done = await settle(aredis, "j-retry", {"complete", "failed"})
    assert done["status"] == "complete" and done["tries"] == "2"
    stub.will(path, Behaviour(status=422, body={"error": {"type": "invalid_model", "message": "not IFC"}}))
    await enqueue(aredis, env, "j-bad", data_dir)
    failed = await settle(aredis, "j-bad", {"complete", "failed"})
    view = await job_store.get(aredis, "j-bad")
    assert failed["status"] == "failed" and view is not None and view.error is not None
    assert view.error.message == "not IFC" and view.tries == 1


async def test_a_result_of_several_megabytes_streamed_by_the_service_completes_whole(
    any_worker, aredis, env, stub, data_dir
):
    clashes = [{"a": f"{i:022d}", "b": f"{i + 1:022d}", "distance": -0.01 * i} for i in range(60_000)]
    result = {"output_files": ["output/ifcclash/c.json"], "clashes": clashes}
    stub.will("/ifcconvert", Behaviour(stream=[{"event": "progress", "percent": 50, "phase": "clash"},
                                               {"event": "result", "result": result}]))
    await enqueue(aredis, env, "j-big", data_dir)
    done = await settle(aredis, "j-big", {"complete", "failed"})
    assert done["status"] == "complete", done.get("error")
    assert len(done["result"]) > 4 * 1024 * 1024
    view = await job_store.get(aredis, "j-big")
    assert view is not None and view.result == result
