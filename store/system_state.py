"""The system as Redis sees it: queue depths and live workers, for health, metrics and the dashboard."""

from __future__ import annotations

import json
import time
from typing import Any

from arq import ArqRedis

from store import keys

_CRON_WINDOW_MS = 5000


async def live_workers(redis: ArqRedis, stale_after_s: float) -> list[dict[str, Any]]:
    """Details of every worker whose heartbeat is newer than ``stale_after_s``."""
    since = int((time.time() - stale_after_s) * 1000)
    ids = [raw.decode() for raw in await redis.zrangebyscore(keys.WORKERS, since, "+inf")]
    if not ids:
        return []
    found = await redis.mget([keys.worker(w) for w in ids])
    return [json.loads(raw) for raw in found if raw]


async def queue_depths(redis: ArqRedis, queues: set[str], workers: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per queue: jobs waiting now (queued), later (deferred), and running (as workers report).

    arq keeps a running job in its queue until it ends, so running jobs are taken out of "queued".
    """
    queues = set(queues) | {str(w["queue"]) for w in workers}
    now = int(time.time() * 1000)
    names = sorted(queues)
    async with redis.pipeline(transaction=False) as pipe:
        for q in names:
            pipe.zcount(q, "-inf", now)
            pipe.zcount(q, f"({now}", "+inf")
            # arq puts the workers' own cron runs in the queue about a second ahead: not jobs.
            pipe.zrangebyscore(q, now - _CRON_WINDOW_MS, now + _CRON_WINDOW_MS, withscores=True)
        counts = await pipe.execute()
    depths: dict[str, dict[str, int]] = {}
    for i, q in enumerate(names):
        running = sum(int(w.get("running", 0)) for w in workers if w["queue"] == q)
        due, later, near = counts[3 * i], counts[3 * i + 1], counts[3 * i + 2]
        cron_due = sum(1 for job_id, score in near if job_id.startswith(b"cron:") and score <= now)
        cron_later = sum(1 for job_id, score in near if job_id.startswith(b"cron:") and score > now)
        depths[q] = {
            "queued": max(due - cron_due - running, 0),
            "deferred": max(later - cron_later, 0),
            "in_progress": running,
        }
    return depths
