"""Concurrent submits share Redis round trips (service/submitter.py) without changing any answer."""

from __future__ import annotations

import asyncio
import time

import pytest
from arq import ArqRedis
from redis.asyncio import ConnectionPool
from redis.exceptions import TimeoutError as RedisTimeoutError

from contracts.operations import Operation
from service.submitter import JobSubmitter
from settings import Settings, get_settings
from store import keys
from store.enqueue import NewJob, _trims, create_job, new_job_id
from store.serialization import deserialize, serialize
from tests.conftest import CONVERT

QUEUE = b"arq:queue"


async def test_many_concurrent_submits_each_get_their_own_job(client, sync_redis, monkeypatch):
    batches: list[int] = []
    pipelined = JobSubmitter._pipelined

    async def counted(self, calls):
        batches.append(len(calls))
        return await pipelined(self, calls)

    monkeypatch.setattr(JobSubmitter, "_pipelined", counted)
    answers = await asyncio.gather(*(client.post("/ifcconvert", json=CONVERT) for _ in range(200)))
    assert batches and max(batches) > 1  # they did share round trips
    assert {r.status_code for r in answers} == {202}
    ids = {r.json()["job_id"] for r in answers}
    assert len(ids) == 200
    assert {m.decode() for m in sync_redis.zrange(QUEUE, 0, -1)} == ids
    assert all(sync_redis.hget(f"ifcflow:job:{i}", "operation") == b"ifcconvert" for i in ids)


async def test_concurrent_replays_and_conflicts_in_one_batch_get_the_right_answers(client, sync_redis):
    key = {"Idempotency-Key": "batch-7"}
    same = [client.post("/ifcconvert", json=CONVERT, headers=key) for _ in range(20)]
    other = [client.post("/ifcconvert", json={**CONVERT, "output_filename": "x.glb"}, headers=key) for _ in range(5)]
    answers = await asyncio.gather(*same, *other)
    statuses = sorted(r.status_code for r in answers)
    # One request made the job. Requests with its body are replays (200) or, if the other body won, conflicts.
    assert statuses.count(202) == 1
    assert set(statuses) <= {200, 202, 409}
    assert statuses.count(409) in (5, 20)
    assert sync_redis.zcard(QUEUE) == 1
    [made] = [r.json()["job_id"] for r in answers if r.status_code == 202]
    assert {r.json()["job_id"] for r in answers if r.status_code == 200} <= {made}


async def test_submits_go_on_after_redis_forgets_its_scripts(client, sync_redis):
    assert (await client.post("/ifcconvert", json=CONVERT)).status_code == 202
    sync_redis.script_flush()  # as after a Redis restart
    answers = await asyncio.gather(*(client.post("/ifcconvert", json=CONVERT) for _ in range(30)))
    assert {r.status_code for r in answers} == {202}
    sync_redis.script_flush()
    assert (await client.post("/ifcconvert", json=CONVERT)).status_code == 202
    assert sync_redis.zcard(QUEUE) == 32


async def test_a_lone_submit_after_redis_dropped_the_idle_connection_still_succeeds(client, sync_redis):
    assert (await client.post("/ifcconvert", json=CONVERT)).status_code == 202
    sync_redis.client_kill_filter(_type="normal", skipme=True)  # as a Redis client timeout would
    await asyncio.sleep(0.1)
    assert (await client.post("/ifcconvert", json=CONVERT)).status_code == 202
    assert sync_redis.zcard(QUEUE) == 2


async def test_a_lone_submit_without_a_reply_in_time_fails_as_a_timeout_and_the_next_one_succeeds(
    env, sync_redis, monkeypatch
):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    pool = ConnectionPool.from_url(env["IFCFLOW_REDIS_URL"], socket_timeout=0.3)
    redis = ArqRedis(pool, job_serializer=serialize, job_deserializer=deserialize)
    submitter = JobSubmitter(redis, get_settings())

    def job() -> NewJob:
        return NewJob(Operation.ifcconvert, {"input_filename": "uploads/model.ifc"}, new_job_id(), fresh_id=True)

    try:
        assert await submitter.create(job(), lambda: "answer") == (True, "answer")
        sync_redis.client_pause(1000)  # Redis answers nobody for a second
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            await submitter.create(job(), lambda: "answer")
        assert time.monotonic() - started < 0.9
        await asyncio.sleep(0.9)
        assert await submitter.create(job(), lambda: "answer") == (True, "answer")
        # The late one may or may not have been made (as with any timeout): never made twice, never half.
        assert sync_redis.zcard(QUEUE) in (2, 3)
        assert len(sync_redis.keys("ifcflow:job:*")) == sync_redis.zcard(QUEUE)
    finally:
        await submitter.close()
        await redis.aclose()
        get_settings.cache_clear()


async def test_the_recent_jobs_index_is_trimmed_back_to_its_cap_by_the_submits_chosen_to_trim(env, sync_redis):
    sync_redis.zadd(keys.RECENT_JOBS, {f"old-{i}": i for i in range(keys.RECENT_JOBS_MAX + 50)})
    settings = Settings(redis_url=env["IFCFLOW_REDIS_URL"], api_keys=["k"])
    redis = ArqRedis(ConnectionPool.from_url(env["IFCFLOW_REDIS_URL"]), job_serializer=serialize,
                     job_deserializer=deserialize)
    ids = [new_job_id() for _ in range(2000)]  # one in 64 trims: one is (all but) sure to be here
    trimming = next(i for i in ids if _trims(i))
    try:
        for job_id in ids[: ids.index(trimming)]:  # none of these trims: the index only grows
            assert await create_job(redis, settings, NewJob(Operation.ifcconvert, {}, job_id, fresh_id=True))
        assert sync_redis.zcard(keys.RECENT_JOBS) == keys.RECENT_JOBS_MAX + 50 + ids.index(trimming)
        assert await create_job(redis, settings, NewJob(Operation.ifcconvert, {}, trimming, fresh_id=True))
        assert sync_redis.zcard(keys.RECENT_JOBS) == keys.RECENT_JOBS_MAX
        assert sync_redis.zrevrange(keys.RECENT_JOBS, 0, 0) == [trimming.encode()]  # the newest stay
    finally:
        await redis.aclose()
