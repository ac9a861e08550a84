"""Where workers move workflows on: when a step's job ends, and in a periodic sweep."""

from __future__ import annotations

from typing import Any, cast

import structlog

from contracts import keys
from jobs.context import WorkerContext
from workflows.engine import advance

log = structlog.get_logger("jobs.workflows")


async def after_job_end(raw_ctx: dict[str, Any]) -> None:
    """arq's hook after every job's result is stored: advance the job's workflow, if it has one."""
    ctx = cast(WorkerContext, raw_ctx)
    job_id = ctx.get("job_id", "")
    if not job_id.startswith("wf-"):  # only workflow steps have such ids; saves a read per job
        return
    workflow_id = await ctx["redis"].hget(keys.job_meta(job_id), "workflow_id")
    if workflow_id:
        await advance(ctx["redis"], ctx["settings"], workflow_id.decode())


async def sweep_workflows(ctx: WorkerContext) -> int:
    """Cron job: advance every running workflow, for steps that ended while nobody advanced them
    (a worker killed between a step's end and its hook, a step cancelled from the gateway)."""
    ids = [raw.decode() for raw in await ctx["redis"].smembers(keys.ACTIVE_WORKFLOWS)]
    for workflow_id in ids:
        await advance(ctx["redis"], ctx["settings"], workflow_id)
    return len(ids)
