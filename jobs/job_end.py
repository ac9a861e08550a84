"""What follows a job's end: its workflow moves on, its webhook is sent. Plus the workflow sweep."""

from __future__ import annotations

from typing import Any, cast

import structlog
from arq.jobs import deserialize_result

from contracts.webhooks import schedule_delivery
from jobs.context import WorkerContext
from store import keys
from store.serialization import deserialize
from workflows import schedules
from workflows.engine import advance

log = structlog.get_logger("jobs.job_end")


async def after_job_end(raw_ctx: dict[str, Any]) -> None:
    """arq's hook after every job's result is stored (and after every try that will be retried)."""
    ctx = cast(WorkerContext, raw_ctx)
    hooks = ctx.get("job_hooks")
    if not hooks:  # most jobs: nothing to do, and nothing was read for it
        return
    redis, job_id = ctx["redis"], ctx["job_id"]
    if "workflow_id" in hooks:
        await advance(redis, ctx["settings"], hooks["workflow_id"])
    if "callback_url" in hooks:
        raw = await redis.get(keys.ARQ_RESULT + job_id)
        if raw is None:  # not over: the job will be tried again
            return
        finished = deserialize_result(raw, deserializer=deserialize).finish_time
        await schedule_delivery(redis, "job", job_id, int(finished.timestamp() * 1000), ctx["settings"].queue_name)


async def sweep_workflows(ctx: WorkerContext) -> int:
    """Cron job: advance every running workflow, for steps that ended while nobody advanced them
    (a worker killed between a step's end and its hook, a step cancelled from the gateway)."""
    ids = [raw.decode() for raw in await ctx["redis"].smembers(keys.ACTIVE_WORKFLOWS)]
    for workflow_id in ids:
        await advance(ctx["redis"], ctx["settings"], workflow_id)
    return len(ids)


async def fire_schedules(ctx: WorkerContext) -> int:
    """Cron job: fire the schedules whose slot has come (once per slot across all workers)."""
    return await schedules.fire_due(ctx["redis"], ctx["settings"])
