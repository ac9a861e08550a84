"""Queue depth samples for the dashboard's sparklines: one sample per slot, whichever worker takes it."""

from __future__ import annotations

import json
import time

from jobs.context import WorkerContext
from settings import DEFAULT_QUEUE
from store import keys
from store.system_state import live_workers, queue_depths

SAMPLE_EVERY_S = 5
SAMPLES_KEPT = 120  # ten minutes


async def sample_queues(ctx: WorkerContext) -> bool:
    """Append one depth sample per queue unless another worker already took this slot."""
    redis, settings = ctx["redis"], ctx["settings"]
    slot = int(time.time() // SAMPLE_EVERY_S)
    if not await redis.set(keys.QUEUE_SAMPLE_LOCK + str(slot), ctx["worker_id"], nx=True, ex=SAMPLE_EVERY_S * 3):
        return False
    workers = await live_workers(redis, settings.heartbeat_interval * 3)
    depths = await queue_depths(redis, {DEFAULT_QUEUE, settings.queue_name, *settings.queues.values()}, workers)
    now = int(time.time() * 1000)
    async with redis.pipeline(transaction=False) as pipe:
        for queue, depth in depths.items():
            pipe.lpush(keys.queue_history(queue), json.dumps({"t": now, **depth}))
            pipe.ltrim(keys.queue_history(queue), 0, SAMPLES_KEPT - 1)
        await pipe.execute()
    return True
