"""What a worker adds to the shared job statistics (read back by any gateway's ``/metrics``)."""

from __future__ import annotations

from arq import ArqRedis

from contracts import stats


async def count_outcome(redis: ArqRedis, operation: str, outcome: stats.Outcome, duration_s: float | None) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        stats.add_count(pipe, operation, outcome)
        if duration_s is not None:
            stats.add_observation(pipe, "duration", operation, duration_s)
        await pipe.execute()


async def observe_queue_wait(redis: ArqRedis, operation: str, seconds: float) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        stats.add_observation(pipe, "queue_wait", operation, max(seconds, 0.0))
        await pipe.execute()
