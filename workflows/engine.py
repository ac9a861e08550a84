"""Running a workflow: record it, start the steps whose dependencies completed, finish it.

``advance`` is idempotent (step jobs have ids derived from the workflow and step), so any worker may
call it at any time: when a step's job ends, from the periodic sweep, or twice at once.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import structlog
from arq import ArqRedis
from pydantic import ValidationError

from contracts.files import PathRefused, normalize_paths
from contracts.operations import OPERATIONS
from contracts.requests import REQUEST_MODELS
from settings import DEFAULT_QUEUE, Settings
from store import job_store, keys
from store.job_store import NewJob, now_ms
from store.job_view import TERMINAL, JobStatus, JobView
from workflows.model import REFERENCE, ReferenceError_, Step, WorkflowRequest, dependencies, references, resolve

log = structlog.get_logger("workflows")

# Step states kept in the workflow's record; a step with a job takes its job's status instead.
PENDING, ENQUEUED, SKIPPED, CANCELLED, FAILED = "pending", "enqueued", "skipped", "cancelled", "failed"
RUNNING, COMPLETE = "running", "complete"


class StepInvalid(ValueError):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"step {step!r}: {message}")
        self.step = step


def step_job_id(workflow_id: str, step_id: str) -> str:
    return f"wf-{workflow_id}-{step_id}"


def _checked_arguments(step: Step, arguments: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """The step's request, validated and with its paths checked and normalized, or ``StepInvalid``."""
    try:
        request = REQUEST_MODELS[step.operation].model_validate(arguments)
        normalize_paths(request, data_dir, OPERATIONS[step.operation].service)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise StepInvalid(step.id, f"{where}: {first['msg']}" if where else first["msg"]) from None
    except PathRefused as exc:
        raise StepInvalid(step.id, f"{'.'.join(map(str, exc.loc))}: {exc.message}") from None
    return request.model_dump(mode="json", by_alias=True)


def _placeholders(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _placeholders(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_placeholders(v) for v in value]
    if isinstance(value, str) and REFERENCE.search(value):
        return REFERENCE.sub("ref", value) if not REFERENCE.fullmatch(value) else "ref.ifc"
    return value


def check_workflow(workflow: WorkflowRequest, data_dir: Path) -> list[Step]:
    """Every step checked now: fully when it uses no earlier result, in shape when it does."""
    checked = []
    for step in workflow.steps:
        if not references(step.arguments):
            arguments = _checked_arguments(step, step.arguments, data_dir)
        else:
            try:
                REQUEST_MODELS[step.operation].model_validate(_placeholders(step.arguments))
            except ValidationError as exc:
                first = exc.errors()[0]
                raise StepInvalid(step.id, f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
            arguments = step.arguments
        checked.append(step.model_copy(update={"arguments": arguments, "depends_on": sorted(dependencies(step))}))
    return checked


async def create_workflow(
    redis: ArqRedis, settings: Settings, workflow: WorkflowRequest, request_id: str | None
) -> str:
    """Record a checked workflow and start its first steps; returns its id."""
    steps = check_workflow(workflow, settings.data_dir)
    workflow_id = uuid.uuid4().hex
    due = now_ms() + int(workflow.defer_by * 1000) if workflow.defer_by else None
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            keys.workflow(workflow_id),
            mapping={
                "steps": json.dumps([s.model_dump(mode="json") for s in steps]),
                "status": RUNNING,
                "created_at": now_ms(),
                "priority": workflow.priority,
                "due_ms": due or "",
                "request_id": request_id or "",
                "callback_url": workflow.callback_url or "",
            },
        )
        pipe.hset(keys.workflow_steps(workflow_id), mapping={s.id: PENDING for s in steps})
        pipe.sadd(keys.ACTIVE_WORKFLOWS, workflow_id)
        await pipe.execute()
    log.info("workflow.created", workflow_id=workflow_id, steps=len(steps))
    await advance(redis, settings, workflow_id)
    return workflow_id


async def load(redis: ArqRedis, workflow_id: str) -> tuple[dict[str, str], list[Step], dict[str, str]] | None:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.workflow(workflow_id))
        pipe.hgetall(keys.workflow_steps(workflow_id))
        raw, raw_states = await pipe.execute()
    if not raw:
        return None
    record = {k.decode(): v.decode() for k, v in raw.items()}
    steps = [Step.model_validate(s) for s in json.loads(record["steps"])]
    states = {k.decode(): v.decode() for k, v in raw_states.items()}
    return record, steps, states


async def step_statuses(
    redis: ArqRedis, workflow_id: str, steps: list[Step], states: dict[str, str]
) -> tuple[dict[str, str], dict[str, JobView]]:
    """Each step's status (its job's, once it has one) and the views of the steps' jobs."""
    job_ids = [step_job_id(workflow_id, s.id) for s in steps if states.get(s.id) == ENQUEUED]
    views = {v.job_id: v for v in await job_store.get_many(redis, job_ids)}
    statuses = {}
    for step in steps:
        state = states.get(step.id, PENDING)
        view = views.get(step_job_id(workflow_id, step.id))
        statuses[step.id] = view.status.value if state == ENQUEUED and view else state
    return statuses, views


async def advance(redis: ArqRedis, settings: Settings, workflow_id: str) -> str | None:
    """Start what can start, skip what cannot, finish the workflow when it is over; its status."""
    loaded = await load(redis, workflow_id)
    if loaded is None:
        return None
    record, steps, states = loaded
    if record["status"] != RUNNING:
        return record["status"]
    statuses, views = await step_statuses(redis, workflow_id, steps, states)
    failed = [s for s, st in statuses.items() if st in (JobStatus.failed, JobStatus.aborted, FAILED, CANCELLED)]
    if failed:
        pending = [s.id for s in steps if statuses[s.id] == PENDING]
        if pending:
            await redis.hset(keys.workflow_steps(workflow_id), mapping=dict.fromkeys(pending, SKIPPED))
        return await _finish(redis, workflow_id, "failed", f"step {failed[0]!r} {statuses[failed[0]]}")
    results = {
        s.id: views[step_job_id(workflow_id, s.id)].result or {}
        for s in steps
        if statuses[s.id] == JobStatus.complete
    }
    for step in steps:
        if statuses[step.id] != PENDING or not set(step.depends_on) <= results.keys():
            continue
        try:
            arguments = _checked_arguments(step, resolve(step.arguments, results), settings.data_dir)
        except (StepInvalid, ReferenceError_) as exc:
            await redis.hset(keys.workflow_steps(workflow_id), step.id, FAILED)
            await redis.hset(keys.workflow(workflow_id), f"error:{step.id}", str(exc))
            log.warning("workflow.step_invalid", workflow_id=workflow_id, step=step.id, error=str(exc))
            return await advance(redis, settings, workflow_id)
        job = NewJob(
            step.operation,
            arguments,
            step_job_id(workflow_id, step.id),
            request_id=record.get("request_id") or None,
            priority=record.get("priority", "normal"),  # type: ignore[arg-type]
            due_ms=int(record["due_ms"]) if record.get("due_ms") else None,
            meta={"workflow_id": workflow_id, "workflow_step": step.id},
        )
        await job_store.create(redis, settings, job)
        await redis.hset(keys.workflow_steps(workflow_id), step.id, ENQUEUED)
        log.info("workflow.step_enqueued", workflow_id=workflow_id, step=step.id, job_id=job.job_id)
    if len(results) == len(steps):
        return await _finish(redis, workflow_id, COMPLETE, None)
    return RUNNING


async def _finish(redis: ArqRedis, workflow_id: str, status: str, error: str | None) -> str:
    """Mark the workflow ended, once: whoever sets ``finished_at`` first also sets the status."""
    finished = now_ms()
    if await redis.hsetnx(keys.workflow(workflow_id), "finished_at", str(finished)):
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.workflow(workflow_id), mapping={"status": status, "error": error or ""})
            pipe.srem(keys.ACTIVE_WORKFLOWS, workflow_id)
            pipe.hget(keys.workflow(workflow_id), "callback_url")
            *_, callback = await pipe.execute()
        log.info("workflow.finished", workflow_id=workflow_id, status=status, error=error)
        if callback:
            await job_store.schedule_delivery(redis, "workflow", workflow_id, finished, DEFAULT_QUEUE)
    return status


async def mark_cancelled(redis: ArqRedis, workflow_id: str) -> list[str]:
    """Stop starting steps; returns the job ids of steps that had started, for the caller to cancel."""
    loaded = await load(redis, workflow_id)
    if loaded is None:
        return []
    _, steps, states = loaded
    pending = [s.id for s in steps if states.get(s.id, PENDING) == PENDING]
    if pending:
        await redis.hset(keys.workflow_steps(workflow_id), mapping=dict.fromkeys(pending, CANCELLED))
    await _finish(redis, workflow_id, "cancelled", "cancelled by request")
    return [step_job_id(workflow_id, s.id) for s in steps if states.get(s.id) == ENQUEUED]


async def view(redis: ArqRedis, workflow_id: str) -> dict[str, Any] | None:
    """The whole graph with each step's status, job and (when ended) result or error."""
    loaded = await load(redis, workflow_id)
    if loaded is None:
        return None
    record, steps, states = loaded
    statuses, views = await step_statuses(redis, workflow_id, steps, states)
    out_steps = []
    for step in steps:
        job = views.get(step_job_id(workflow_id, step.id))
        out_steps.append(
            {
                "id": step.id,
                "operation": step.operation.value,
                "depends_on": step.depends_on,
                "status": statuses[step.id],
                "job_id": job.job_id if job else None,
                "result": job.result if job else None,
                "error": (job.error.model_dump() if job and job.error else None)
                or ({"type": "invalid_step", "message": record[f"error:{step.id}"]} if f"error:{step.id}" in record
                    else None),
            }
        )
    return {
        "workflow_id": workflow_id,
        "status": record["status"],
        "error": record.get("error") or None,
        "created_at": int(record["created_at"]),
        "finished_at": int(record["finished_at"]) if record.get("finished_at") else None,
        "steps": out_steps,
        "terminal": record["status"] != RUNNING and all(
            st in {s.value for s in TERMINAL} | {SKIPPED, CANCELLED, FAILED, PENDING} for st in statuses.values()
        ),
    }
