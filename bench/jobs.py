"""Putting jobs on queues directly (no gateway) and checking how they ended."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from arq import ArqRedis
from arq.jobs import deserialize_result
from redis import Redis as SyncRedis
from rq import Queue

from bench.procs import BenchError
from bench.rq_job import call_service
from contracts.operations import Operation
from settings import Settings
from store import job_store, keys
from store.serialization import deserialize

CONVERT = {"input_filename": "uploads/model.ifc", "output_filename": "model.glb"}
# ifcflow's default jobs in flight per worker process; peers that run many jobs per process get as many.
MAX_JOBS = int(Settings.model_fields["max_jobs"].default)
# Read once, at import, not in a timed span: the defaults (queue, timeouts) the workers of a run use.
SETTINGS = Settings()


def new_ids(count: int) -> list[str]:
    return [uuid.uuid4().hex for _ in range(count)]


async def enqueue_arq(
    arq: ArqRedis, function: str, ids: list[str], kwargs: dict[str, Any], *, queue: str | None = None,
    concurrency: int = 32,
) -> None:
    """``enqueue_job`` each id, ``concurrency`` at a time (as many clients would)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(job_id: str) -> None:
        async with gate:
            job = await arq.enqueue_job(function, _job_id=job_id, _queue_name=queue, **kwargs)
            if job is None:
                raise BenchError(f"job id {job_id} was already taken")

    await asyncio.gather(*(one(i) for i in ids))


async def enqueue_ifcflow(arq: ArqRedis, ids: list[str], concurrency: int = 32) -> None:
    """ifcflow ``ifcconvert`` jobs as the gateway enqueues them (``store.job_store.create``: the record,
    arq's job and queue entry, the project's index, the wake-up of the queue's workers), ``concurrency``
    at a time (as many clients would)."""
    gate = asyncio.Semaphore(concurrency)
    settings = SETTINGS

    async def one(job_id: str) -> None:
        async with gate:
            # Fresh random ids, as the gateway's own (no idempotency key): nothing to check them against.
            job = job_store.NewJob(Operation.ifcconvert, CONVERT, job_id, fresh_id=True)
            if not await job_store.create(arq, settings, job):
                raise BenchError(f"job id {job_id} was already taken")

    await asyncio.gather(*(one(i) for i in ids))


async def failed_arq(arq: ArqRedis, ids: list[str]) -> int:
    """How many of the finished jobs did not succeed (a run with failures is not a measurement)."""
    async with arq.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.get(keys.ARQ_RESULT + job_id)
        raws = await pipe.execute()
    return sum(1 for raw in raws if raw is None or not deserialize_result(raw, deserializer=deserialize).success)


def enqueue_rq(redis_url: str, queue: str, url: str, count: int) -> None:
    """``count`` RQ jobs calling the stand-in service (RQ is synchronous: run in a thread)."""
    with SyncRedis.from_url(redis_url) as conn:
        q = Queue(queue, connection=conn)
        q.enqueue_many([Queue.prepare_data(call_service, (url, CONVERT)) for _ in range(count)])


async def rq_counts(redis: Any, queue: str) -> tuple[int, int]:
    """(finished, failed) jobs of the RQ queue."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(f"rq:finished:{queue}")
        pipe.zcard(f"rq:failed:{queue}")
        finished, failed = await pipe.execute()
    return int(finished), int(failed)
