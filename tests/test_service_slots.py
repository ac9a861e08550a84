"""Backpressure to the IFC services: the fleet never sends a service more calls than it has slots;
jobs wait for capacity (holding nothing) in queue order, a busy answer is not a try, and jobs of a
free service are not held up by jobs waiting for a busy one."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from contracts.operations import Operation
from contracts.wire import JOB_ID_HEADER
from jobs.health import fleet_capacities
from settings import Settings
from store import job_store, keys, service_slots
from store.job_store import NewJob
from tests.conftest import ARQ_WORKER_COMMAND, CONVERT, WORKER_COMMAND, Behaviour, start_worker, submit, until

CLASH = {"clash_sets": [{"name": "s", "a": [{"file": "model.ifc"}], "b": []}], "output_filename": "c.json"}
BUSY = Behaviour(status=503, body={"error": {"type": "busy", "message": "ifcconvert is busy: all 2 slots are taken"}},
                 headers={"Retry-After": "1"})
BOTH_COMMANDS = pytest.mark.parametrize("command", [WORKER_COMMAND, ARQ_WORKER_COMMAND], ids=["batch", "arq"])


@pytest.fixture
def settings(redis_url: str, tmp_path: Any) -> Settings:
    return Settings(redis_url=redis_url, data_dir=tmp_path, result_ttl=600)


@contextlib.contextmanager
def workers(env: dict[str, str], tmp_path: Any, sync_redis: Any, count: int, command: list[str]) -> Iterator[None]:
    procs = [start_worker(env, tmp_path / f"w{i}.log", sync_redis, live=i + 1, command=command) for i in range(count)]
    try:
        yield
    finally:
        for p in procs:
            p.stop()


async def _make(aredis: Redis, settings: Settings, job_id: str, op: Operation, **options: Any) -> None:
    assert await job_store.create(aredis, settings, NewJob(op, CONVERT, job_id, **options))


async def test_a_claim_leaves_jobs_of_a_full_service_queued_and_takes_the_next_in_order_when_a_slot_frees(
    aredis, settings
):
    await service_slots.publish_capacities(aredis, {"ifcclash": 2})
    for i in range(5):
        await _make(aredis, settings, f"clash-{i}", Operation.ifcclash)
    await _make(aredis, settings, "convert", Operation.ifcconvert)
    first = await job_store.claim(aredis, settings, settings.queue_name, "w1", 10, 60_000)
    assert [j for j, _ in first.jobs] == ["clash-0", "clash-1", "convert"]
    assert first.waiting == 3
    assert (await job_store.record_of(aredis, "clash-0"))["slot"] == "held"
    assert (await job_store.record_of(aredis, "clash-2"))["status"] == "queued"
    assert await service_slots.in_use(aredis, ["ifcclash", "ifcconvert"]) == {"ifcclash": 2, "ifcconvert": 0}

    assert (await job_store.claim(aredis, settings, settings.queue_name, "w2", 10, 60_000)).jobs == []
    # Its try ended (as arq's finish_job leaves it), however it ended: the slot frees itself.
    await aredis.delete(keys.ARQ_IN_PROGRESS + "clash-1")
    await aredis.zrem(settings.queue_name, "clash-1")
    again = await job_store.claim(aredis, settings, settings.queue_name, "w2", 10, 60_000)
    assert [j for j, _ in again.jobs] == ["clash-2"] and again.waiting == 2


async def test_a_job_that_waited_for_a_full_service_past_its_time_limit_is_claimed_to_fail(aredis, settings):
    await service_slots.publish_capacities(aredis, {"ifcconvert": 1})
    await _make(aredis, settings, "holder", Operation.ifcconvert)
    await _make(aredis, settings, "waiter", Operation.ifcconvert)
    assert [j for j, _ in (await job_store.claim(aredis, settings, settings.queue_name, "w", 5, 60_000)).jobs] == [
        "holder"]
    limit_ms = settings.timeout_for(Operation.ifcconvert) * 1000
    await aredis.hset(keys.job_meta("waiter"), "enqueued_at", str(job_store.now_ms() - limit_ms - 1))
    claimed = await job_store.claim(aredis, settings, settings.queue_name, "w", 5, 60_000)
    assert [j for j, _ in claimed.jobs] == ["waiter"]
    start = await job_store.start(aredis, "waiter", "w", 1)
    assert start is not None and start.slot == "expired"


async def test_a_slot_is_acquired_by_one_job_at_a_time_and_frees_when_its_try_ends(aredis, settings):
    await service_slots.publish_capacities(aredis, {"ifcdiff": 1})
    for job_id in ("a", "b"):
        await aredis.set(keys.ARQ_IN_PROGRESS + job_id, "1")
    assert await service_slots.acquire(aredis, "ifcdiff", "a")
    assert not await service_slots.acquire(aredis, "ifcdiff", "b")
    assert await service_slots.acquire(aredis, "ifcdiff", "a")  # holding one already
    await aredis.delete(keys.ARQ_IN_PROGRESS + "a")
    assert await service_slots.acquire(aredis, "ifcdiff", "b")
    # No known capacity: no limit.
    assert await service_slots.acquire(aredis, "ifccsv", "b")


def test_the_fleet_takes_each_services_capacity_from_its_health_unless_the_setting_says_otherwise():
    results = [{"service": "ifcclash", "capacity": 3}, {"service": "ifcconvert", "capacity": None},
               {"service": "ifcdiff", "capacity": 4}]
    settings = Settings(service_slots={"ifcdiff": 12, "nonsense": 1})
    assert fleet_capacities(settings, results) == {"ifcclash": 3, "ifcdiff": 12}


@BOTH_COMMANDS
async def test_a_fleet_never_sends_a_service_more_concurrent_calls_than_its_slots(
    api, env, tmp_path, sync_redis, stub, command
):
    env = {**env, "IFCFLOW_MAX_JOBS": "10", "IFCFLOW_SERVICE_SLOTS": json.dumps({"ifcconvert": 2})}
    stub.default = Behaviour(delay=0.3)
    with workers(env, tmp_path, sync_redis, 2, command):
        ids = await asyncio.gather(*(submit(api, "/ifcconvert", CONVERT) for _ in range(16)))
        views = [await until(api, j, timeout=60) for j in ids]
    assert {(v["status"], v["tries"]) for v in views} == {("complete", 1)}
    assert stub.max_in_flight == 2
    assert len(stub.calls) == 16  # no call refused and made again


async def test_jobs_of_a_free_service_run_while_jobs_wait_for_a_full_one(api, env, tmp_path, sync_redis, stub):
    env = {**env, "IFCFLOW_MAX_JOBS": "4", "IFCFLOW_SERVICE_SLOTS": json.dumps({"ifcclash": 1})}
    stub.will("/ifcclash", *[Behaviour(delay=1.0) for _ in range(6)])
    with workers(env, tmp_path, sync_redis, 1, WORKER_COMMAND):
        clashes = [await submit(api, "/ifcclash", CLASH) for _ in range(6)]
        convert = await submit(api, "/ifcconvert", CONVERT)
        assert (await until(api, convert, timeout=30))["status"] == "complete"
        done = [(await api.get(f"/jobs/{j}")).json()["status"] for j in clashes]
        assert done.count("complete") <= 2 and done.count("queued") >= 3  # they wait queued, holding no slot
        views = [await until(api, j, timeout=60) for j in clashes]
    assert {v["status"] for v in views} == {"complete"}
    assert [c["headers"][JOB_ID_HEADER] for c in stub.calls_to("/ifcclash")] == clashes  # in queue order
    assert stub.max_in_flight <= 2  # one clash, and the convert beside it


@BOTH_COMMANDS
async def test_a_job_waiting_for_a_full_service_past_its_time_limit_fails_saying_so(
    api, env, tmp_path, sync_redis, stub, command
):
    # Two operations of one service: a long import holds its only slot past the export's 3 s limit.
    (Path(env["IFCFLOW_DATA_DIR"]) / "uploads" / "edits.csv").write_text("GlobalId,Name\n")
    env = {**env, "IFCFLOW_SERVICE_SLOTS": json.dumps({"ifccsv": 1}),
           "IFCFLOW_JOB_TIMEOUTS": json.dumps({"ifccsv": 3, "ifccsv_import": 30})}
    stub.will("/ifccsv/import", Behaviour(delay=8))
    with workers(env, tmp_path, sync_redis, 1, command):
        holder = await submit(api, "/ifccsv/import", {"ifc_filename": "model.ifc", "csv_filename": "edits.csv"})
        await until(api, holder, {"in_progress"})
        waiter = await submit(api, "/ifccsv", {"filename": "model.ifc", "output_filename": "x.csv"})
        view = await until(api, waiter, timeout=30)
        assert (await until(api, holder, timeout=30))["status"] == "complete"
    assert view["status"] == "failed"
    assert view["error"]["type"] == "timeout" and "timed out waiting for ifccsv" in view["error"]["message"]
    assert stub.calls_to("/ifccsv") == []  # the waiter never called the service


async def test_busy_answers_are_waited_out_and_not_counted_as_tries(api, env, tmp_path, sync_redis, stub):
    env = {**env, "IFCFLOW_MAX_TRIES": "2", "IFCFLOW_RETRY_BACKOFF": "0.1"}
    stub.will("/ifcconvert", BUSY, BUSY, BUSY, BUSY)
    with workers(env, tmp_path, sync_redis, 1, WORKER_COMMAND):
        view = await until(api, await submit(api, "/ifcconvert", CONVERT), timeout=60)
    assert view["status"] == "complete" and view["tries"] == 1
    assert len(stub.calls_to("/ifcconvert")) == 5
