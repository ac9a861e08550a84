"""arq's job hooks: each try's start and end go to the job store here, not in the job functions.

``on_job_start`` records the start (one round trip) and binds the log context; the job function
says how its try ended in ``ctx["try_end"]``; ``after_job_end`` (called by arq once its own keys are
written) records that end with its statistics (one round trip), then moves the job's workflow on
and schedules its webhook when the job is over.
"""

from __future__ import annotations

import time
from typing import Any, cast

import structlog

from jobs.context import WorkerContext
from jobs.persist import until_written
from store import job_store
from workflows.engine import advance

log = structlog.get_logger("jobs")

_OVER = ("complete", "failed", "aborted")


async def on_job_start(raw_ctx: dict[str, Any]) -> None:
    ctx = cast(WorkerContext, raw_ctx)
    job_id, attempt = ctx["job_id"], ctx["job_try"]
    ctx["try_started"] = time.perf_counter()
    start = await until_written("job start", lambda: job_store.start(ctx["redis"], job_id, ctx["worker_id"], attempt))
    if start is None:  # a cron run or a webhook delivery: nothing to record
        return
    ctx["job"] = start
    ctx["counters"]["running"] += 1
    # arq starts the job's task after this hook, in a copy of this context: its log lines carry these.
    structlog.contextvars.bind_contextvars(
        job_id=job_id, operation=start.operation.value, attempt=attempt, request_id=start.request_id
    )
    log.info("job.started")


async def after_job_end(raw_ctx: dict[str, Any]) -> None:
    ctx = cast(WorkerContext, raw_ctx)
    redis, settings, job_id, worker_id = ctx["redis"], ctx["settings"], ctx["job_id"], ctx["worker_id"]
    start = ctx.get("job")
    if start is None:
        await until_written("job end", lambda: job_store.release(redis, job_id, worker_id))
        return
    ctx["counters"]["running"] -= 1
    end = ctx.get("try_end") or job_store.TryEnd("interrupted")
    counter = {"complete": "complete", "failed": "failed", "aborted": "failed", "retry": "retried"}.get(end.outcome)
    if counter:
        ctx["counters"][counter] += 1  # type: ignore[literal-required]
    attempt = ctx["job_try"]
    waited = time.time() - start.queued_since_ms / 1000 if attempt == 1 else None
    duration = time.perf_counter() - ctx["try_started"]
    await until_written("job end", lambda: job_store.finish(
        redis, settings, job_id, worker_id, attempt, start.operation, end, duration_s=duration, waited_s=waited,
    ))
    if end.outcome not in _OVER:
        return
    if "workflow_id" in start.hooks:
        await advance(redis, settings, start.hooks["workflow_id"], ctx["storage"])
    if "callback_url" in start.hooks:
        await job_store.schedule_delivery(redis, "job", job_id, job_store.now_ms(), settings.queue_name)
