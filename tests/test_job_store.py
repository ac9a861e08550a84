"""The job store (store/job_store.py) and each of its Lua scripts, against a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from contracts.operations import Operation
from contracts.wire import ErrorInfo
from settings import Settings
from store import job_store, keys, scripts
from store.job_store import IdempotencyConflict, NewJob, TryEnd
from store.job_view import JobStatus

CONVERT = {"input_filename": "uploads/model.ifc", "output_filename": "output/ifcconvert/m.glb"}
WORKER = "host:1:aaaaaa"


class CountingRedis(Redis):
    """A client that counts the commands (round trips, pipelines counting one) it sends."""

    sent = 0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        CountingRedis.sent += 1
        return await super().execute_command(*args, **options)


@pytest.fixture
async def aredis(redis_url: str) -> AsyncIterator[Redis]:
    client = CountingRedis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def settings(redis_url: str, tmp_path: Any) -> Settings:
    return Settings(redis_url=redis_url, data_dir=tmp_path, result_ttl=600, max_tries=3)


async def made(aredis: Redis, settings: Settings, job_id: str = "job-1", **options: Any) -> NewJob:
    job = NewJob(Operation.ifcconvert, CONVERT, job_id, request_id="req-1", **options)
    assert await job_store.create(aredis, settings, job)
    return job


async def record(aredis: Redis, job_id: str) -> dict[str, str]:
    return await job_store.record_of(aredis, job_id)


async def test_a_created_job_is_one_record_queued_with_arqs_job_key_and_queue_entry(aredis, settings):
    await made(aredis, settings)
    rec = await record(aredis, "job-1")
    assert rec["status"] == "queued" and rec["operation"] == "ifcconvert" and rec["request_id"] == "req-1"
    assert orjson.loads(rec["args"]) == CONVERT
    assert await aredis.exists(keys.ARQ_JOB + "job-1")
    assert await aredis.zscore(settings.queue_name, "job-1") is not None
    assert await aredis.ttl(keys.job_meta("job-1")) > settings.result_ttl
    view = await job_store.get(aredis, "job-1")
    assert view is not None and view.status is JobStatus.queued and view.arguments == CONVERT


async def test_reading_a_job_is_one_round_trip(aredis, settings):
    await made(aredis, settings)
    before = CountingRedis.sent
    assert await job_store.get(aredis, "job-1") is not None
    assert CountingRedis.sent - before == 1


async def test_the_same_id_again_is_a_replay_and_another_request_under_it_a_conflict(aredis, settings):
    job = await made(aredis, settings)
    assert not await job_store.create(aredis, settings, job)
    other = NewJob(Operation.ifcconvert, {**CONVERT, "output_filename": "output/ifcconvert/x.glb"}, "job-1")
    with pytest.raises(IdempotencyConflict):
        await job_store.create(aredis, settings, other)
    assert await aredis.zcard(settings.queue_name) == 1


async def test_a_deferred_job_reads_deferred_until_due_then_queued(aredis, settings):
    due = job_store.now_ms() + 60_000
    await made(aredis, settings, due_ms=due)
    rec = await record(aredis, "job-1")
    assert rec["status"] == "deferred" and int(rec["due_at"]) == due
    assert (await job_store.get(aredis, "job-1")).status is JobStatus.deferred  # type: ignore[union-attr]
    await aredis.hset(keys.job_meta("job-1"), "due_at", str(job_store.now_ms() - 1))
    assert (await job_store.get(aredis, "job-1")).status is JobStatus.queued  # type: ignore[union-attr]


async def test_a_claim_reads_past_running_jobs_and_records_its_holder_in_the_same_step(aredis, settings):
    for i in range(30):
        await made(aredis, settings, f"job-{i:02}")
    first = (await job_store.claim(aredis, settings, settings.queue_name, "worker-a", 20, 30_000)).jobs
    second = (await job_store.claim(aredis, settings, settings.queue_name, "worker-b", 20, 30_000)).jobs
    assert len(first) == 20 and len(second) == 10
    assert not {j for j, _ in first} & {j for j, _ in second}
    rec = await record(aredis, second[0][0])
    assert rec["status"] == "in_progress" and rec["worker"] == "worker-b"
    assert await aredis.scard(keys.worker_jobs("worker-a")) == 20
    assert (await job_store.claim(aredis, settings, settings.queue_name, "worker-c", 5, 30_000)).jobs == []


async def test_a_claim_takes_no_job_that_is_not_due(aredis, settings):
    await made(aredis, settings, "later", due_ms=job_store.now_ms() + 60_000)
    assert (await job_store.claim(aredis, settings, settings.queue_name, WORKER, 5, 30_000)).jobs == []


async def test_start_then_complete_writes_the_result_ttl_and_statistics_and_releases_the_job(aredis, settings):
    await made(aredis, settings, meta={"callback_url": "http://hook.example/x"})
    start = await job_store.start(aredis, "job-1", WORKER, 1)
    assert start is not None and start.operation is Operation.ifcconvert and start.request_id == "req-1"
    assert start.hooks == {"callback_url": "http://hook.example/x"}
    rec = await record(aredis, "job-1")
    assert rec["status"] == "in_progress" and rec["tries"] == "1" and rec["worker"] == WORKER
    await job_store.set_progress(aredis, "job-1", 40, "tessellating")
    assert (await job_store.get(aredis, "job-1")).progress.percent == 40  # type: ignore[union-attr]

    end = TryEnd("complete", result={"output_files": ["output/ifcconvert/m.glb"]})
    assert await job_store.finish(aredis, settings, "job-1", WORKER, 1, Operation.ifcconvert, end,
                                  duration_s=0.3, waited_s=0.01)
    view = await job_store.get(aredis, "job-1")
    assert view is not None and view.status is JobStatus.complete and view.result == end.result
    assert view.finished_at is not None and view.progress is not None and view.progress.percent == 100
    assert 0 < await aredis.ttl(keys.job_meta("job-1")) <= settings.result_ttl
    assert not await aredis.sismember(keys.worker_jobs(WORKER), "job-1")
    assert await aredis.hget(keys.STATS_COUNTS, "ifcconvert:completed") == b"1"
    hist = await aredis.hgetall(keys.stats_histogram("duration", "ifcconvert"))
    assert hist[b"count"] == b"1" and float(hist[b"sum"]) == pytest.approx(0.3)
    assert (await aredis.hgetall(keys.stats_histogram("queue_wait", "ifcconvert")))[b"count"] == b"1"


async def test_a_retry_waits_deferred_with_its_note_and_a_failure_keeps_its_error(aredis, settings):
    await made(aredis, settings)
    await job_store.start(aredis, "job-1", WORKER, 1)
    await job_store.finish(aredis, settings, "job-1", WORKER, 1, Operation.ifcconvert,
                           TryEnd("retry", retry_reason="503 busy", retry_delay_s=30))
    view = await job_store.get(aredis, "job-1")
    assert view is not None and view.status is JobStatus.deferred
    assert view.retry is not None and view.retry.attempt == 1 and view.retry.reason == "503 busy"
    await job_store.start(aredis, "job-1", WORKER, 2)
    assert (await job_store.get(aredis, "job-1")).retry is None  # type: ignore[union-attr]
    error = ErrorInfo(type="service_error", message="bad model", service="ifcconvert", status_code=422)
    await job_store.finish(aredis, settings, "job-1", WORKER, 2, Operation.ifcconvert, TryEnd("failed", error=error))
    view = await job_store.get(aredis, "job-1")
    assert view is not None and view.status is JobStatus.failed and view.error == error and view.tries == 2


async def test_the_end_of_a_try_whose_job_another_worker_holds_now_is_not_written(aredis, settings):
    await made(aredis, settings)
    await job_store.start(aredis, "job-1", "worker-old", 1)
    await job_store.start(aredis, "job-1", "worker-new", 2)  # handed back and started again elsewhere
    late = TryEnd("failed", error=ErrorInfo(type="x", message="late"))
    assert not await job_store.finish(aredis, settings, "job-1", "worker-old", 1, Operation.ifcconvert, late)
    assert (await record(aredis, "job-1"))["status"] == "in_progress"


async def test_a_job_without_a_record_has_no_start_to_record(aredis):
    assert await job_store.start(aredis, "cron:check_services:1", WORKER, 1) is None
    await job_store.release(aredis, "cron:check_services:1", WORKER)
    assert not await aredis.exists(keys.worker_jobs(WORKER))


async def test_cancel_of_a_queued_job_takes_it_off_the_queue_and_records_aborted(aredis, settings):
    await made(aredis, settings)
    assert await job_store.cancel(aredis, settings, "job-1") == "cancelled"
    view = await job_store.get(aredis, "job-1")
    assert view is not None and view.status is JobStatus.aborted and view.error is not None
    assert not await aredis.exists(keys.ARQ_JOB + "job-1")
    assert await aredis.zscore(settings.queue_name, "job-1") is None
    assert await job_store.cancel(aredis, settings, "job-1") == "aborted"


async def test_cancel_of_a_claimed_job_asks_its_worker_to_abort_it(aredis, settings, redis_url):
    await made(aredis, settings)
    await job_store.claim(aredis, settings, settings.queue_name, WORKER, 1, 30_000)
    listener = Redis.from_url(redis_url)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(keys.ABORT_CHANNEL)
    try:
        await pubsub.get_message(timeout=5)  # the subscription's confirmation
        assert await job_store.cancel(aredis, settings, "job-1") == "aborting"
        message = await pubsub.get_message(timeout=5)
        assert message is not None and message["data"] == b"job-1"
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await listener.aclose()
    assert await job_store.abort_requests(aredis, ["job-1", "other"]) == {"job-1"}
    assert (await record(aredis, "job-1"))["status"] == "in_progress"


async def test_the_abort_set_drops_requests_older_than_its_window(aredis):
    old = job_store.now_ms() - job_store.ABORT_WINDOW_MS - 1_000
    await aredis.zadd(keys.ARQ_ABORT, {f"stale-{i}": old for i in range(500)})
    await scripts.ABORT(aredis, [keys.ARQ_ABORT], ["fresh", job_store.now_ms(), job_store.ABORT_WINDOW_MS,
                                                   keys.ABORT_CHANNEL])
    assert await aredis.zrange(keys.ARQ_ABORT, 0, -1) == [b"fresh"]


async def failed_job(aredis: Redis, settings: Settings, job_id: str = "job-1") -> None:
    await made(aredis, settings, job_id)
    await job_store.claim(aredis, settings, settings.queue_name, WORKER, 1, 30_000)
    await job_store.start(aredis, job_id, WORKER, 1)
    # As arq's finish_job leaves a failed job: no job key, no queue entry, no in-progress marker.
    await aredis.delete(keys.ARQ_JOB + job_id, keys.ARQ_IN_PROGRESS + job_id)
    await aredis.zrem(settings.queue_name, job_id)
    await job_store.finish(aredis, settings, job_id, WORKER, 1, Operation.ifcconvert,
                           TryEnd("failed", error=ErrorInfo(type="x", message="boom")))


@pytest.mark.parametrize("trial", range(10))
async def test_of_eight_concurrent_requeues_of_a_failed_job_exactly_one_wins(aredis, settings, trial):
    await failed_job(aredis, settings)
    outcomes = await asyncio.gather(*(job_store.requeue(aredis, settings, "job-1") for _ in range(8)))
    assert outcomes.count("requeued") == 1, outcomes
    assert set(outcomes) - {"requeued"} <= {"queued", "busy"}
    view = await job_store.get(aredis, "job-1")
    assert view is not None and view.status is JobStatus.queued and view.error is None and view.tries == 0
    assert await aredis.zcard(settings.queue_name) == 1 and await aredis.exists(keys.ARQ_JOB + "job-1")
    await aredis.flushall()


async def test_a_queued_or_unknown_job_is_not_requeued(aredis, settings):
    await made(aredis, settings)
    assert await job_store.requeue(aredis, settings, "job-1") == "queued"
    assert await job_store.requeue(aredis, settings, "nothing") == "gone"


async def test_a_dead_workers_jobs_go_back_to_the_queue_and_read_queued(aredis, settings):
    await made(aredis, settings)
    await job_store.claim(aredis, settings, settings.queue_name, "dead", 1, 30_000)
    await job_store.start(aredis, "job-1", "dead", 1)
    await aredis.zadd(keys.WORKERS, {"dead": job_store.now_ms() - 60_000})
    assert await job_store.reap_dead_workers(aredis, settings, 15) == ["job-1"]
    assert not await aredis.exists(keys.ARQ_IN_PROGRESS + "job-1", keys.worker_jobs("dead"))
    assert (await job_store.get(aredis, "job-1")).status is JobStatus.queued  # type: ignore[union-attr]
    assert (await job_store.claim(aredis, settings, settings.queue_name, "alive", 1, 30_000)).jobs != []


async def test_a_reaper_spares_a_worker_whose_heartbeat_is_fresh(aredis, settings):
    await made(aredis, settings)
    await job_store.claim(aredis, settings, settings.queue_name, "alive", 1, 30_000)
    await aredis.zadd(keys.WORKERS, {"alive": job_store.now_ms()})
    assert await job_store.reap_dead_workers(aredis, settings, 15) == []
    assert await aredis.exists(keys.ARQ_IN_PROGRESS + "job-1")


async def test_a_job_arq_finished_before_its_worker_died_takes_arqs_result_instead_of_running_again(
    aredis, settings
):
    from arq.jobs import serialize_result

    from store.serialization import serialize

    await made(aredis, settings)
    await job_store.claim(aredis, settings, settings.queue_name, "dead", 1, 30_000)
    await job_store.start(aredis, "job-1", "dead", 1)
    now = job_store.now_ms()
    result = serialize_result("ifcconvert", (), {}, 1, now, True, {"ok": True}, now, now, "job-1:ifcconvert",
                              settings.queue_name, job_id="job-1", serializer=serialize)
    assert result is not None
    await aredis.set(keys.ARQ_RESULT + "job-1", result)
    await aredis.delete(keys.ARQ_JOB + "job-1", keys.ARQ_IN_PROGRESS + "job-1")
    await aredis.zrem(settings.queue_name, "job-1")
    await aredis.zadd(keys.WORKERS, {"dead": now - 60_000})
    assert await job_store.reap_dead_workers(aredis, settings, 15) == []
    view = await job_store.get(aredis, "job-1")
    assert view is not None and view.status is JobStatus.complete and view.result == {"ok": True}


async def test_every_script_loads_again_after_redis_forgets_it(aredis, settings):
    await aredis.script_flush()
    await made(aredis, settings)
    assert all(await aredis.script_exists(*(s.sha for s in scripts.ALL[:1])))


def test_script_shas_match_their_sources():
    import hashlib

    for script in scripts.ALL:
        assert script.sha == hashlib.sha1(script.source.encode()).hexdigest()
        assert script.source.startswith("--"), f"{script.name}.lua says what it takes first"


async def test_a_job_end_refused_by_a_full_redis_is_retried_until_it_is_written(aredis, settings):
    from redis.exceptions import OutOfMemoryError

    from jobs.persist import until_written

    await made(aredis, settings)
    await job_store.start(aredis, "job-1", WORKER, 1)
    refusals = 2
    end = TryEnd("complete", result={"ok": True})

    async def write() -> bool:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'.")
        return await job_store.finish(aredis, settings, "job-1", WORKER, 1, Operation.ifcconvert, end)

    assert await asyncio.wait_for(until_written("job end", write), 10)
    assert refusals == 0 and (await record(aredis, "job-1"))["status"] == "complete"


async def test_creates_sent_together_are_each_made_once_even_after_redis_forgot_the_script(aredis, settings):
    await made(aredis, settings, "taken")
    await aredis.script_flush()
    jobs = [NewJob(Operation.ifcconvert, CONVERT, f"many-{i}", fresh_id=True) for i in range(5)]
    replay = NewJob(Operation.ifcconvert, CONVERT, "taken", request_id="req-1")
    conflict = NewJob(Operation.ifcconvert, {**CONVERT, "output_filename": "output/ifcconvert/o.glb"}, "taken")
    results = await job_store.create_many(aredis, settings, [*jobs, replay, conflict])
    assert results[:6] == [True] * 5 + [False]
    assert isinstance(results[6], IdempotencyConflict)
    assert await aredis.zcard(settings.queue_name) == 6
