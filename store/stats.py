"""Job statistics kept in Redis: what gateways and workers count, and how a gateway reads it back."""

from __future__ import annotations

import bisect
import time
from typing import Any, Literal

from store import keys

Outcome = Literal["enqueued", "completed", "failed", "retried", "aborted"]
OUTCOMES: tuple[Outcome, ...] = ("enqueued", "completed", "failed", "retried", "aborted")
HistogramName = Literal["duration", "queue_wait"]

# Seconds. IFC jobs run from well under a second (JSON of a small model) to hours (federated clash).
BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)


def bucket_field(seconds: float) -> str:
    """The hash field of the smallest bucket holding ``seconds`` (``+Inf`` past the last)."""
    i = bisect.bisect_left(BUCKETS, seconds)
    return repr(float(BUCKETS[i])) if i < len(BUCKETS) else "+Inf"


def add_count(pipe: Any, operation: str, outcome: Outcome) -> None:
    pipe.hincrby(keys.STATS_COUNTS, f"{operation}:{outcome}", 1)


def add_observation(pipe: Any, name: HistogramName, operation: str, seconds: float) -> None:
    key = keys.stats_histogram(name, operation)
    pipe.hincrby(key, bucket_field(seconds), 1)
    pipe.hincrbyfloat(key, "sum", seconds)
    pipe.hincrby(key, "count", 1)


def cumulative_buckets(raw: dict[str, str]) -> tuple[list[tuple[str, float]], float]:
    """Prometheus' cumulative ``(le, count)`` pairs and the sum, from one stored histogram hash."""
    running = 0.0
    out: list[tuple[str, float]] = []
    for bound in BUCKETS:
        running += float(raw.get(repr(float(bound)), 0))
        out.append((repr(float(bound)), running))
    running += float(raw.get("+Inf", 0))
    out.append(("+Inf", running))
    return out, float(raw.get("sum", 0.0))


# The dashboard's counts read at most this many jobs per queue; past it they say "at least".
LIVE_COUNT_LIMIT = 5000
_RECORD_FIELDS = ("status", "due_at", "worker", "project")


async def live_counts(
    redis: Any, queues: list[str], limit: int = LIVE_COUNT_LIMIT, project: str | None = None
) -> dict[str, Any]:
    """Queued, deferred and running jobs per queue, and running jobs per worker, from the jobs' own
    records: the source the jobs table shows, so the two never disagree (workers' heartbeats lag).

    Every job not yet ended is in its arq queue (arq keeps a running one there until it ends), so
    the queue's members are exactly the jobs to count; ids without a record (arq cron runs, webhook
    deliveries) are not jobs and are skipped. With ``project``, only that project's jobs are counted (a
    record without a project is ``default``'s, as before projects).
    """
    async with redis.pipeline(transaction=False) as pipe:
        for q in queues:
            pipe.zrange(q, 0, limit - 1)
            pipe.zcard(q)
        listed = await pipe.execute()
    ids_per_queue = [[i.decode() if isinstance(i, bytes) else str(i) for i in ids] for ids in listed[0::2]]
    async with redis.pipeline(transaction=False) as pipe:
        for ids in ids_per_queue:
            for job_id in ids:
                pipe.hmget(keys.job_meta(job_id), *_RECORD_FIELDS)
        records = await pipe.execute()
    now_ms = time.time() * 1000
    per_queue: dict[str, dict[str, Any]] = {}
    per_worker: dict[str, int] = {}
    position = 0
    for q, ids, total in zip(queues, ids_per_queue, listed[1::2], strict=True):
        counts = {"queued": 0, "deferred": 0, "in_progress": 0, "capped": int(total) > limit}
        for raw in records[position : position + len(ids)]:
            status, due_at, worker, owner = (v.decode() if isinstance(v, bytes) else v for v in raw)
            if project is not None and (owner or keys.DEFAULT_PROJECT) != project:
                continue
            if status in ("queued", "deferred"):
                counts["deferred" if due_at and int(due_at) > now_ms else "queued"] += 1
            elif status == "in_progress":
                counts["in_progress"] += 1
                if worker:
                    per_worker[worker] = per_worker.get(worker, 0) + 1
        position += len(ids)
        per_queue[q] = counts
    return {"queues": per_queue, "workers": per_worker}
