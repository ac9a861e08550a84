"""The workers' periodic jobs beside the service health check: workflow sweep and schedules."""

from __future__ import annotations

from jobs.context import WorkerContext
from store import keys
from workflows import schedules
from workflows.engine import advance


async def sweep_workflows(ctx: WorkerContext) -> int:
    """Advance every running workflow, for steps that ended while nobody advanced them
    (a worker killed between a step's end and its hook, a step cancelled from the gateway)."""
    ids = [raw.decode() for raw in await ctx["redis"].smembers(keys.ACTIVE_WORKFLOWS)]  # type: ignore[misc]
    for workflow_id in ids:
        await advance(ctx["redis"], ctx["settings"], workflow_id, ctx["storage"])
    return len(ids)


async def fire_schedules(ctx: WorkerContext) -> int:
    """Fire the schedules whose slot has come (once per slot across all workers)."""
    return await schedules.fire_due(ctx["redis"], ctx["settings"], ctx["storage"])
