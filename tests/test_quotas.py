"""Quotas per project (access/quotas.py, store/lua/claim.lua): requests per second, waiting jobs, running
jobs and stored bytes, against a real Redis, a real store and a real worker; their settings; the
gateway's answer to a quota exceeded."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import AsyncExitStack
from typing import Any

import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager
from pydantic import ValidationError
from redis.asyncio import Redis
from starlette.requests import Request

from access import quotas
from access.grants import Caller, Role
from access.quotas import QuotaExceeded, check_rate, check_storage, check_submit, size_text
from contracts.operations import Operation
from contracts.wire import JOB_ID_HEADER
from settings import Settings, get_settings
from store import job_store, keys
from store.job_store import NewJob, TryEnd
from tests.conftest import API_KEY, CONVERT, WORKER_COMMAND, Behaviour, start_worker

STORED_CONVERT = {"input_filename": "uploads/model.ifc", "output_filename": "output/ifcconvert/m.glb"}
A = Caller("key_a", "a", Role.submit)
A_KEY = "a-submit-key-for-quotas-0123"
B = Caller("key_b", "b", Role.submit)
DEFAULT = Caller("key_d", "default", Role.admin)


def quota_settings(redis_url: str, tmp_path: Any, **values: Any) -> Settings:
    return Settings(redis_url=redis_url, data_dir=tmp_path, result_ttl=600, **values)


class NoRedis:
    """A Redis that fails any use: a check of a project without that limit must not touch Redis."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Redis used ({name}) for a project without that limit")


def job(job_id: str, project: str, **options: Any) -> NewJob:
    return NewJob(Operation.ifcconvert, STORED_CONVERT, job_id, project=project, fresh_id=True, **options)


async def make(aredis: Redis, settings: Settings, jobs: list[NewJob]) -> None:
    assert await job_store.create_many(aredis, settings, jobs) == [True] * len(jobs)


async def claim(aredis: Redis, settings: Settings, free: int, worker: str = "w") -> job_store.Claim:
    return await job_store.claim(aredis, settings, settings.queue_name, worker, free, 60_000)


async def ended_by_arq(aredis: Redis, settings: Settings, job_id: str, retry: bool = False) -> None:
    """What arq's finish_job leaves: no in-progress key; the job off its queue unless it is retried."""
    await aredis.delete(keys.ARQ_IN_PROGRESS + job_id)
    if not retry:
        await aredis.delete(keys.ARQ_JOB + job_id)
        await aredis.zrem(settings.queue_name, job_id)


# --- settings ---------------------------------------------------------------------------------------


def test_project_quotas_are_read_from_json_over_the_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("IFCFLOW_QUOTA_RPS", "5")
    monkeypatch.setenv("IFCFLOW_QUOTA_QUEUED", "100")
    monkeypatch.setenv("IFCFLOW_PROJECT_QUOTAS", json.dumps(
        {"a": {"rps": 20, "queued": 10000, "in_flight": 50, "storage_bytes": 5e10}, "b": {"rps": 0}}))
    settings = Settings(data_dir=tmp_path)
    assert settings.quota_for("a") == (20, 50, 10000, 50_000_000_000)
    assert settings.quota_for("b") == (0, 0, 100, 0)  # 0 overrides a default: unlimited
    assert settings.quota_for("c").rps == 5 and settings.quota_for("c").storage_bytes == 0


@pytest.mark.parametrize(("value", "said"), [
    ({"a": {"rsp": 20}}, "rsp"),
    ({"A B": {"rps": 1}}, "project 'A B'"),
    ({"a": {"queued": -1}}, "greater than or equal to 0"),
])
def test_a_bad_project_quota_stops_the_process_naming_it(monkeypatch, tmp_path, value, said):
    monkeypatch.setenv("IFCFLOW_PROJECT_QUOTAS", json.dumps(value))
    with pytest.raises(ValidationError, match="project_quotas") as raised:
        Settings(data_dir=tmp_path)
    assert said in str(raised.value)


def test_sizes_are_written_as_people_read_them():
    assert [size_text(n) for n in (0, 999, 1000, 200e6, 49.9e9, 50e9, 999.96e6, 3.2e15)] == [
        "0 B", "999 B", "1 kB", "200 MB", "49.9 GB", "50 GB", "1 GB", "3200 TB"]


# --- requests per second ------------------------------------------------------------------------------


async def test_requests_past_the_projects_rate_are_429_with_retry_after_counted_over_all_gateways(
    redis_url, aredis, tmp_path, monkeypatch
):
    settings = quota_settings(redis_url, tmp_path, quota_rps=3, project_quotas={"b": {"rps": 1}})
    monkeypatch.setattr(quotas, "_second", lambda: 1_700_000_000)  # one second, however long the test takes
    other_gateway = Redis.from_url(redis_url)
    try:
        await check_rate(aredis, settings, A)
        await check_rate(other_gateway, settings, A)
        await check_rate(aredis, settings, A)
        with pytest.raises(QuotaExceeded) as refused:
            await check_rate(other_gateway, settings, A)
    finally:
        await other_gateway.aclose()
    assert (refused.value.status, refused.value.retry_after) == (429, 1)
    assert refused.value.message == (
        "project a is limited to 3 requests per second (IFCFLOW_QUOTA_RPS / IFCFLOW_PROJECT_QUOTAS)")
    await check_rate(aredis, settings, B)  # each project has its own count, and its own limit
    with pytest.raises(QuotaExceeded, match="project b is limited to 1 requests"):
        await check_rate(aredis, settings, B)
    # The next second counts afresh; counters do not outlive their second by more than one.
    monkeypatch.setattr(quotas, "_second", lambda: 1_700_000_001)
    await check_rate(aredis, settings, A)
    assert 0 < await aredis.ttl(keys.quota_rate("a", 1_700_000_001)) <= 2


async def test_a_project_without_limits_is_never_counted(redis_url, tmp_path):
    settings = quota_settings(redis_url, tmp_path, project_quotas={"a": {"rps": 5}})
    for _ in range(3):
        await check_rate(NoRedis(), settings, B)  # type: ignore[arg-type]
        await check_submit(NoRedis(), settings, B, jobs=1000)  # type: ignore[arg-type]
        await check_storage(NoRedis(), settings, None, B, 10**12)  # type: ignore[arg-type]


# --- waiting jobs ---------------------------------------------------------------------------------------


async def test_a_submit_past_the_projects_waiting_jobs_is_429_with_retry_after(redis_url, aredis, tmp_path):
    settings = quota_settings(redis_url, tmp_path, project_quotas={"a": {"queued": 3}},
                              queues={Operation.ifcclash: "clash"})
    await make(aredis, settings, [job("a1", "a"), job("a2", "a"), job("b1", "b"), job("b2", "b")])
    await make(aredis, settings, [NewJob(Operation.ifcclash, {}, "a3", project="a", fresh_id=True)])
    await check_submit(aredis, settings, B, jobs=100)  # b has no limit
    with pytest.raises(QuotaExceeded) as refused:
        await check_submit(aredis, settings, A)  # two in the default queue and one in clash's
    assert (refused.value.status, refused.value.retry_after) == (429, quotas.QUEUED_RETRY_AFTER)
    assert refused.value.message.startswith(
        "project a may have at most 3 waiting jobs (IFCFLOW_QUOTA_QUEUED / IFCFLOW_PROJECT_QUOTAS): 3 are waiting")

    # A running job is not waiting: once one starts, one more may wait.
    assert [j for j, _ in (await claim(aredis, settings, 1)).jobs] == ["a1"]
    await check_submit(aredis, settings, A)
    with pytest.raises(QuotaExceeded, match="2 are waiting, this submit makes 2 more"):
        await check_submit(aredis, settings, A, jobs=2)


async def test_a_submit_bigger_than_the_whole_waiting_limit_says_so_without_retry_after(redis_url, aredis, tmp_path):
    settings = quota_settings(redis_url, tmp_path, quota_queued=10)
    with pytest.raises(QuotaExceeded) as refused:
        await check_submit(aredis, settings, A, jobs=11)
    assert refused.value.retry_after is None and "this submit alone makes 11" in refused.value.message


# --- running jobs: the claim leaves a project at its limit waiting ------------------------------------------


async def test_a_project_at_its_in_flight_limit_waits_while_the_others_run(redis_url, aredis, tmp_path):
    settings = quota_settings(redis_url, tmp_path, project_quotas={"a": {"in_flight": 2}})
    await make(aredis, settings, [job(f"a{i}", "a") for i in range(5)] + [job(f"b{i}", "b") for i in range(3)])
    first = await claim(aredis, settings, 10)
    assert sorted(j for j, _ in first.jobs) == ["a0", "a1", "b0", "b1", "b2"]
    again = await claim(aredis, settings, 10)
    assert again.jobs == [] and again.waiting == 1  # a's jobs wait: the worker backs off, nothing fails
    assert await aredis.zcard(keys.fair_index(settings.queue_name, "a")) == 3

    # A try that completes frees its place, on any worker.
    await job_store.start(aredis, "a0", "w", 1)
    await ended_by_arq(aredis, settings, "a0")
    await job_store.finish(aredis, settings, "a0", "w", 1, Operation.ifcconvert, TryEnd("complete", result={}))
    assert [j for j, _ in (await claim(aredis, settings, 10, worker="v")).jobs] == ["a2"]
    assert (await claim(aredis, settings, 10)).jobs == []


async def test_a_retry_an_abort_and_a_dead_worker_each_free_their_running_place(redis_url, aredis, tmp_path):
    settings = quota_settings(redis_url, tmp_path, quota_in_flight=1)
    await make(aredis, settings, [job(f"a{i}", "a") for i in range(3)])
    running = keys.project_running("a")

    # A retry: the try ends, the job waits again (in its index) and is claimed again when due.
    assert [j for j, _ in (await claim(aredis, settings, 5)).jobs] == ["a0"]
    await job_store.start(aredis, "a0", "w", 1)
    await ended_by_arq(aredis, settings, "a0", retry=True)
    await job_store.finish(aredis, settings, "a0", "w", 1, Operation.ifcconvert, TryEnd("retry", retry_reason="503"))
    assert [j for j, _ in (await claim(aredis, settings, 5)).jobs] == ["a0"]

    # An abort of the running job: its try ends as aborted, and the next job of a starts.
    assert await job_store.cancel(aredis, settings, "a0") == "aborting"
    await job_store.start(aredis, "a0", "w", 2)
    await ended_by_arq(aredis, settings, "a0")
    await job_store.finish(aredis, settings, "a0", "w", 2, Operation.ifcconvert,
                           TryEnd("aborted", error=None))
    assert (await job_store.get(aredis, "a0")).status == "aborted"  # type: ignore[union-attr]
    assert [j for j, _ in (await claim(aredis, settings, 5)).jobs] == ["a1"]

    # Its worker dies: the job is handed back, and runs again (alone: a2 still waits).
    await aredis.zadd(keys.WORKERS, {"w": job_store.now_ms() - 60_000})
    assert await job_store.reap_dead_workers(aredis, settings, 15) == ["a1"]
    assert [j for j, _ in (await claim(aredis, settings, 5, worker="v")).jobs] == ["a1"]
    assert await aredis.smembers(running) == {b"a1"}  # type: ignore[misc]
    # The set never outlives the in-progress keys it counts by.
    assert 0 < await aredis.pttl(running) <= 60_000


async def test_the_default_in_flight_limit_applies_to_every_project_but_those_set_unlimited(
    redis_url, aredis, tmp_path
):
    settings = quota_settings(redis_url, tmp_path, quota_in_flight=1, project_quotas={"b": {"in_flight": 0}})
    await make(aredis, settings, [job(f"{p}{i}", p) for p in ("a", "b", "c") for i in range(3)])
    claimed = sorted(j for j, _ in (await claim(aredis, settings, 20)).jobs)
    assert claimed == ["a0", "b0", "b1", "b2", "c0"]


async def test_without_in_flight_limits_the_claim_keeps_no_running_sets(redis_url, aredis, tmp_path):
    settings = quota_settings(redis_url, tmp_path)
    await make(aredis, settings, [job(f"a{i}", "a") for i in range(3)])
    assert len((await claim(aredis, settings, 5)).jobs) == 3
    assert not [k async for k in aredis.scan_iter(match=keys.PROJECT_RUNNING + "*")]


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)  # the stand-in service runs on this loop


async def test_a_real_worker_runs_one_job_of_a_at_a_time_beside_bs_jobs(
    redis_url, aredis, tmp_path, env, sync_redis, stub
):
    settings = quota_settings(redis_url, tmp_path)
    stub.default = Behaviour(delay=1.0)  # long enough that b's three start while a's first still runs
    await make(aredis, settings, [job(f"a{i}", "a") for i in range(3)] + [job(f"b{i}", "b") for i in range(3)])
    quota = orjson.dumps({"a": {"in_flight": 1}}).decode()
    worker = start_worker({**env, "IFCFLOW_MAX_JOBS": "6", "IFCFLOW_PROJECT_QUOTAS": quota}, tmp_path / "w.log",
                          sync_redis, command=WORKER_COMMAND)
    try:
        def running() -> list[str]:
            return [c["headers"].get(JOB_ID_HEADER) or "" for c in stub.calls]

        await wait_until(lambda: sum(j.startswith("b") for j in running()) == 3, 30, "b's jobs never all started")
        assert sum(j.startswith("a") for j in running()) == 1, running()  # b's three run beside a single a
        await wait_until(lambda: len(running()) == 6, 30, "a's jobs never all ran")
        for j in ("a0", "a1", "a2"):
            await wait_until(lambda j=j: sync_redis.hget(keys.job_meta(j), "status") == b"complete", 30, j)
    finally:
        worker.stop()
    assert stub.max_in_flight <= 4  # never two of a at once


# --- stored bytes ---------------------------------------------------------------------------------------------


async def put(storage: Any, key: str, size: int) -> None:
    async def chunks() -> Any:
        yield b"x" * size

    await storage.receive(key, chunks(), size)


async def test_an_upload_past_the_projects_storage_quota_is_507_saying_how_much_is_stored(
    redis_url, aredis, storage, tmp_path
):
    settings = quota_settings(redis_url, tmp_path, project_quotas={"a": {"storage_bytes": 5000}})
    await put(storage, "projects/a/uploads/one.ifc", 3000)
    await put(storage, "projects/a/uploads/one.ifc", 1000)  # a second version: both are stored
    await put(storage, "uploads/default.ifc", 9000)  # the default project's, not a's
    await put(storage, "projects/b/uploads/b.ifc", 9000)
    await check_storage(aredis, settings, storage, A, 900)  # 4 kB + 0.9 kB fit in 5 kB
    with pytest.raises(QuotaExceeded) as refused:
        await check_storage(aredis, settings, storage, A, 200)  # the 900 admitted count, before the next walk
    assert (refused.value.status, refused.value.retry_after) == (507, None)
    assert refused.value.message == (
        "project a's storage quota of 5 kB is too small for this upload: 4.9 kB stored, this upload is 200 B "
        "(IFCFLOW_QUOTA_STORAGE_BYTES / IFCFLOW_PROJECT_QUOTAS)")
    await check_storage(aredis, settings, storage, B, 10**9)  # b has no limit
    assert await quotas.stored_bytes(aredis, settings, storage, "default") == 9000


async def test_the_stored_bytes_are_walked_again_in_the_background_once_the_figure_is_old(
    redis_url, aredis, storage, tmp_path
):
    settings = quota_settings(redis_url, tmp_path, quota_storage_bytes=10_000, quota_storage_refresh=60)
    await put(storage, "projects/a/uploads/one.ifc", 6000)
    assert await quotas.stored_bytes(aredis, settings, storage, "a") == 6000  # no figure yet: walked now
    await put(storage, "projects/a/uploads/two.ifc", 3000)  # written past the gateway: not counted yet
    await check_storage(aredis, settings, storage, A, 1000)  # admitted: counted at once
    await put(storage, "projects/a/uploads/three.ifc", 1000)
    assert await quotas.stored_bytes(aredis, settings, storage, "a") == 7000

    # Old: this request still answers from the figure it has, and a walk starts behind it.
    await aredis.hset(keys.QUOTA_STORAGE, ".walked_at", repr(time.time() - 61))
    assert await quotas.stored_bytes(aredis, settings, storage, "a") == 7000
    await asyncio.gather(*quotas._refreshing)
    assert await quotas.stored_bytes(aredis, settings, storage, "a") == 10_000
    with pytest.raises(QuotaExceeded, match="quota of 10 kB is used: 10 kB stored, this upload is 1 B"):
        await check_storage(aredis, settings, storage, A, 1)
    assert not await aredis.exists(keys.QUOTA_STORAGE_WALK)  # the walker let go
    assert 0 < await aredis.ttl(keys.QUOTA_STORAGE) <= 2 * 60 + 60


async def test_one_gateway_walks_the_store_at_a_time(redis_url, aredis, storage, tmp_path):
    settings = quota_settings(redis_url, tmp_path, quota_storage_bytes=10_000, quota_storage_refresh=60)
    await quotas.walk_store(aredis, settings, storage)
    await aredis.hset(keys.QUOTA_STORAGE, ".walked_at", repr(time.time() - 61))
    await aredis.set(keys.QUOTA_STORAGE_WALK, "1", ex=60)  # another gateway walks it now
    assert await quotas.stored_bytes(aredis, settings, storage, "a") == 0
    assert not quotas._refreshing


# --- the gateway's answer -----------------------------------------------------------------------------------


def _request() -> Request:
    return Request({"type": "http", "method": "POST", "path": "/ifcconvert", "headers": []})


async def test_a_quota_exceeded_is_answered_with_its_status_retry_after_and_message():
    from service.app import _quota_exceeded

    answer = await _quota_exceeded(_request(), QuotaExceeded(429, "project a is limited", retry_after=5))
    assert answer.status_code == 429 and answer.headers["retry-after"] == "5"
    assert orjson.loads(answer.body) == {"detail": "project a is limited"}
    full = await _quota_exceeded(_request(), QuotaExceeded(507, "project a's storage quota of 5 kB is used"))
    assert full.status_code == 507 and "retry-after" not in full.headers


# --- end to end, through the gateway's routes ------------------------------------------------------------------


@pytest.fixture
async def gateway_app(env, data_dir, monkeypatch):
    """Starts the gateway in-process with a submit key of project a and the settings given: its client."""
    async with AsyncExitStack() as stack:

        async def start(**settings: str) -> httpx.AsyncClient:
            for name, value in {**env, "IFCFLOW_API_KEYS": f"{API_KEY},a:submit:{A_KEY}", **settings}.items():
                monkeypatch.setenv(name, value)
            get_settings.cache_clear()
            from service.app import create_app

            uploads = data_dir / "projects" / "a" / "uploads"
            uploads.mkdir(parents=True)
            (uploads / "model.ifc").write_text("ISO-10303-21;\nEND-ISO-10303-21;\n")
            manager = await stack.enter_async_context(LifespanManager(create_app()))
            return await stack.enter_async_context(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=manager.app), base_url="http://gateway",
                headers={"X-API-Key": A_KEY}))

        yield start
    get_settings.cache_clear()


async def test_a_submit_past_the_projects_queued_quota_is_429_with_retry_after(gateway_app):
    client = await gateway_app(IFCFLOW_PROJECT_QUOTAS='{"a": {"queued": 2}}')
    for _ in range(2):
        assert (await client.post("/ifcconvert", json=CONVERT)).status_code == 202
    r = await client.post("/ifcconvert", json=CONVERT)
    assert r.status_code == 429 and r.headers["retry-after"] == str(quotas.QUEUED_RETRY_AFTER)
    assert r.json()["detail"].startswith("project a may have at most 2 waiting jobs (IFCFLOW_QUOTA_QUEUED")
    # Another project's submit is not refused for a's jobs.
    other = await client.post("/ifcconvert", json=CONVERT, headers={"X-API-Key": API_KEY})
    assert other.status_code == 202, other.text


async def test_an_upload_past_the_projects_storage_quota_is_507(gateway_app):
    client = await gateway_app(IFCFLOW_PROJECT_QUOTAS='{"a": {"storage_bytes": 1000}}')
    first = await client.post("/upload/ifc", files={"file": ("one.ifc", b"x" * 400)})
    assert first.status_code in (200, 201), first.text
    r = await client.post("/upload/ifc", files={"file": ("two.ifc", b"x" * 400)})
    assert r.status_code == 507
    assert r.json()["detail"].startswith("project a's storage quota of 1 kB is too small for this upload: ")


async def test_requests_past_the_projects_rate_are_429_with_retry_after_through_the_gateway(
    gateway_app, monkeypatch
):
    monkeypatch.setattr(quotas, "_second", lambda: 1_700_000_000)
    client = await gateway_app(IFCFLOW_QUOTA_RPS="2")
    assert [(await client.get("/jobs")).status_code for _ in range(3)] == [200, 200, 429]
    r = await client.get("/jobs")
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert r.json() == {"detail": "project a is limited to 2 requests per second "
                                  "(IFCFLOW_QUOTA_RPS / IFCFLOW_PROJECT_QUOTAS)"}

