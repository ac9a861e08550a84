"""What the job store and jobs/arq_adapter.py rely on in arq: fails when an arq release changes it.

arq 0.28 is what pyproject allows (``arq>=0.28,<0.29``); a new minor must pass these before the pin moves.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator

import arq
import arq.constants
import arq.worker
import pytest
from arq import ArqRedis
from arq.jobs import deserialize_job_raw

from contracts.operations import Operation
from jobs import WorkerSettings
from jobs.arq_adapter import USED_ATTRIBUTES, USED_METHODS, BatchClaimWorker
from store import job_store, keys
from store.serialization import deserialize, serialize


@pytest.fixture
async def arq_redis(redis_url: str) -> AsyncIterator[ArqRedis]:
    from redis.asyncio import ConnectionPool

    client = ArqRedis(ConnectionPool.from_url(redis_url), job_serializer=serialize, job_deserializer=deserialize)
    yield client
    await client.aclose()


def test_arqs_key_layout_is_the_one_the_job_store_writes():
    assert (arq.constants.job_key_prefix, arq.constants.in_progress_key_prefix, arq.constants.result_key_prefix,
            arq.constants.retry_key_prefix, arq.constants.abort_jobs_ss, arq.constants.default_queue_name) == (
        "arq:job:", "arq:in-progress:", "arq:result:", "arq:retry:", "arq:abort", "arq:queue")
    assert (keys.ARQ_JOB, keys.ARQ_IN_PROGRESS, keys.ARQ_RESULT, keys.ARQ_RETRY, keys.ARQ_ABORT) == (
        "arq:job:", "arq:in-progress:", "arq:result:", "arq:retry:", "arq:abort")


async def test_a_submitted_jobs_payload_is_byte_for_byte_what_arqs_enqueue_job_writes(arq_redis, redis_url, tmp_path):
    from settings import Settings

    request = {"input_filename": "uploads/m.ifc", "output_filename": "output/ifcconvert/m.glb"}
    await arq_redis.enqueue_job("ifcconvert", request=request, request_id="r-1", _job_id="by-arq")
    arqs = await arq_redis.get(keys.ARQ_JOB + "by-arq")
    _, _, _, _, enqueued_ms = deserialize_job_raw(arqs, deserializer=deserialize)
    assert job_store._payload(Operation.ifcconvert, request, "r-1", enqueued_ms) == arqs

    settings = Settings(redis_url=redis_url, data_dir=tmp_path)
    await job_store.create(arq_redis, settings, job_store.NewJob(Operation.ifcconvert, request, "ours", "r-1"))
    ours = await arq_redis.get(keys.ARQ_JOB + "ours")
    function, args, kwargs, job_try, _ = deserialize_job_raw(ours, deserializer=deserialize)
    assert (function, list(args), job_try) == ("ifcconvert", [], None)
    assert kwargs == {"request": request, "request_id": "r-1"}
    # arq's own reader of a job: what a worker and arq's Job API see.
    info = await arq.jobs.Job("ours", arq_redis, _deserializer=deserialize).info()
    assert info is not None and info.function == "ifcconvert" and info.kwargs["request_id"] == "r-1"


def test_arqs_worker_still_has_what_the_batch_claiming_worker_uses():
    worker = arq.worker.Worker(functions=WorkerSettings.functions, redis_settings=WorkerSettings.redis_settings,
                               handle_signals=False)
    for name in USED_METHODS:
        assert callable(getattr(arq.worker.Worker, name)), name
    for name in USED_ATTRIBUTES:
        assert hasattr(worker, name), name
    assert list(inspect.signature(arq.worker.Worker.start_jobs).parameters) == ["self", "job_ids"]
    assert list(inspect.signature(arq.worker.Worker.finish_failed_job).parameters) == ["self", "job_id", "result_data"]
    assert list(inspect.signature(arq.worker.Worker.run_job).parameters) == ["self", "job_id", "score"]
    # arq's poll hands the due ids it read to start_jobs, and its early failures go through finish_failed_job.
    assert "self.start_jobs(job_ids)" in inspect.getsource(arq.worker.Worker._poll_iteration)
    assert "self.finish_failed_job(" in inspect.getsource(arq.worker.Worker.run_job)
    # A finished job leaves arq's abort set: what keeps the set bounded beside the abort script's window.
    assert "tr.zrem(abort_jobs_ss, job_id)" in inspect.getsource(arq.worker.Worker.finish_job)
    assert issubclass(BatchClaimWorker, arq.worker.Worker)


def test_the_worker_settings_are_a_static_class_arq_reads_as_is():
    kwargs = arq.worker.get_kwargs(WorkerSettings)
    assert {"functions", "cron_jobs", "on_startup", "on_job_start", "after_job_end", "on_shutdown",
            "queue_name", "max_jobs", "job_serializer", "job_deserializer", "redis_settings"} <= set(kwargs)
    assert {f.name for f in kwargs["functions"]} >= {op.value for op in Operation}
    # Importing jobs leaves arq's Worker as it is: the batch claims come only with `python -m jobs`.
    assert arq.worker.Worker is not BatchClaimWorker
    assert arq.worker.create_worker(WorkerSettings, handle_signals=False).__class__ is arq.worker.Worker
