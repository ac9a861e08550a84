"""Running a workflow: record it, start the steps whose dependencies completed, finish it.

``advance`` is idempotent (step jobs have ids derived from the workflow and step, and every change
is one transaction over the workflow's keys: ``workflows/record.py``), so any worker may call it at
any time: when a step's job ends (``jobs/hooks.py``), from the periodic sweep, or twice at once. It
copies each ended step's outcome into the workflow, so a workflow outlives its steps' job records.

A workflow belongs to a project (``project`` in its record, ``default`` for one recorded before
projects existed): its steps are that project's jobs, their paths checked in the project's view of
the store (``access.scope``), and the record's ``scope`` says whether it sees the whole store instead
(``store``: made by an admin of ``default``, and every workflow from before projects existed). An
ifcpatch step's recipe arguments that name files are checked there too, as ``POST /patch/execute``
checks them (``contracts.patch_check``): a recipe opens only files of the workflow's project.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import structlog
from arq import ArqRedis
from pydantic import ValidationError

from access.grants import DEFAULT_PROJECT
from access.scope import ProjectStorage, client_paths, for_project
from contracts.compat_requests import IfcPatchRequest
from contracts.files import PathRefused
from contracts.operations import OPERATIONS
from contracts.patch_check import PatchRefused, RecipesUnavailable, check_patch_job
from contracts.requests import REQUEST_MODELS
from contracts.stored_paths import check_paths
from settings import DEFAULT_QUEUE, Settings
from storage import Storage
from store import job_store, keys
from store.job_store import NewJob, now_ms
from store.job_view import TERMINAL, JobView
from workflows.model import REFERENCE, ReferenceError_, Step, WorkflowRequest, dependencies, references, resolve
from workflows.record import (
    CANCELLED,
    COMPLETE,
    ENQUEUED,
    FAILED,
    FAILING,
    INVALID,
    LOST,
    OUTCOME,
    PENDING,
    RUNNING,
    SKIPPED,
    Change,
    Contended,
    Loaded,
    read,
    step_job_id,
    transact,
)

log = structlog.get_logger("workflows")

__all__ = ["StepInvalid", "advance", "cancel", "check_workflow", "create_workflow", "step_job_id", "view",
           "workflow_storage"]

STORE_SCOPE, PROJECT_SCOPE = "store", "project"

LOST_ERROR = {"type": "lost", "message": "its job's record was gone (expired or deleted) before the workflow "
                                         "recorded the job's outcome"}
SETTLED = {s.value for s in TERMINAL} | {SKIPPED, CANCELLED, FAILED, PENDING, LOST}


class StepInvalid(ValueError):
    """A step that cannot run as given; ``loc`` names the field of its ``arguments`` at fault, when known."""

    def __init__(self, step: str, message: str, loc: tuple[str | int, ...] = ()) -> None:
        super().__init__(f"step {step!r}: {message}")
        self.step = step
        self.loc = loc


def _refused(step: Step, loc: tuple[str | int, ...], message: str) -> StepInvalid:
    return StepInvalid(step.id, f"{'.'.join(map(str, loc))}: {message}" if loc else message, loc)


async def _checked_arguments(
    step: Step, arguments: dict[str, Any], storage: Storage, settings: Settings, request_id: str | None, *,
    pin: bool = True,
) -> dict[str, Any]:
    """The step's request, validated and with its paths (an ifcpatch recipe's too) checked and
    normalized, or ``StepInvalid``; with ``pin`` its inputs pinned to their versions now (when the step
    starts). ``RecipesUnavailable`` for a project's ifcpatch step while the recipe listing is not to be had."""
    try:
        request = REQUEST_MODELS[step.operation].model_validate(arguments)
        await check_paths(storage, request, OPERATIONS[step.operation].service, record=pin)
        if isinstance(request, IfcPatchRequest):
            await check_patch_job(settings, request, storage, request_id)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _refused(step, tuple(first["loc"]), first["msg"]) from None
    except (PathRefused, PatchRefused) as exc:
        raise _refused(step, exc.loc, exc.message) from None
    dumped = request.model_dump(mode="json", by_alias=True)
    if pin:  # as the operation routes record a job: the pins resolved, the client's pin fields not kept
        for name in ("input_version_id", "old_version_id", "new_version_id"):
            if dumped.get(name) is None:
                dumped.pop(name, None)
    return dumped


def _placeholders(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _placeholders(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_placeholders(v) for v in value]
    if isinstance(value, str) and REFERENCE.search(value):
        return REFERENCE.sub("ref", value) if not REFERENCE.fullmatch(value) else "ref.ifc"
    return value


async def check_workflow(
    workflow: WorkflowRequest, storage: Storage, settings: Settings, request_id: str | None = None
) -> list[Step]:
    """Every step checked now: fully when it uses no earlier result (a pin it names must exist; it
    pins when it starts), in shape when it does (its paths, and an ifcpatch step's recipe arguments,
    are checked when it starts and they are known)."""
    checked = []
    for step in workflow.steps:
        if not references(step.arguments):
            arguments = await _checked_arguments(step, step.arguments, storage, settings, request_id, pin=False)
        else:
            try:
                REQUEST_MODELS[step.operation].model_validate(_placeholders(step.arguments))
            except ValidationError as exc:
                first = exc.errors()[0]
                raise _refused(step, tuple(first["loc"]), first["msg"]) from None
            arguments = step.arguments
        checked.append(step.model_copy(update={"arguments": arguments, "depends_on": sorted(dependencies(step))}))
    return checked


def workflow_storage(storage: Storage, record: dict[str, str]) -> Storage:
    """The part of the store a workflow's steps work on (of the store under ``storage``, which may be
    any view): its project's view, or the whole store for one whose scope is the store's."""
    project = record.get("project") or DEFAULT_PROJECT
    whole = project == DEFAULT_PROJECT and (record.get("scope") or STORE_SCOPE) == STORE_SCOPE
    return for_project(storage, project, whole_store=whole)


async def create_workflow(
    redis: ArqRedis, settings: Settings, workflow: WorkflowRequest, request_id: str | None, storage: Storage,
    project: str = DEFAULT_PROJECT,
) -> str:
    """Record a checked workflow of ``project`` and start its first steps; returns its id.

    ``storage`` is the caller's part of the store (``access.scope.for_caller``): the workflow sees the
    whole store only when that is the whole store and ``project`` is ``default`` (an admin of
    ``default``); otherwise its paths are checked in ``project``'s view."""
    whole = project == DEFAULT_PROJECT and not isinstance(storage, ProjectStorage)
    scope = {"project": project, "scope": STORE_SCOPE if whole else PROJECT_SCOPE}
    steps = await check_workflow(workflow, workflow_storage(storage, scope), settings, request_id)
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
                **scope,
            },
        )
        pipe.hset(keys.workflow_steps(workflow_id), mapping={s.id: PENDING for s in steps})
        pipe.sadd(keys.ACTIVE_WORKFLOWS, workflow_id)
        await pipe.execute()
    log.info("workflow.created", workflow_id=workflow_id, steps=len(steps), project=project)
    await advance(redis, settings, workflow_id, storage)
    return workflow_id


def _copied(workflow_id: str, loaded: Loaded, views: dict[str, JobView], change: Change) -> None:
    """Each enqueued step whose job ended takes the job's outcome (or is lost when its job is gone)."""
    for step in loaded.steps:
        if loaded.state(step.id) != ENQUEUED:
            continue
        job = views.get(step_job_id(workflow_id, step.id))
        if job is None:
            outcome: dict[str, Any] = {"status": LOST, "result": None, "error": LOST_ERROR}
        elif job.status in TERMINAL:
            error = job.error.model_dump() if job.error else None
            outcome = {"status": job.status.value, "result": job.result, "error": error}
        else:
            continue
        change.states[step.id] = outcome["status"]
        change.fields[OUTCOME + step.id] = json.dumps(outcome)


async def _started(
    settings: Settings, storage: Storage, workflow_id: str, loaded: Loaded, states: dict[str, str],
    change: Change,
) -> None:
    """Start every pending step whose dependencies completed, its inputs pinned now (they are earlier
    steps' outputs); when one is invalid, it fails and nothing starts (the workflow fails).

    Arguments checked at creation and earlier results hold full store keys: made relative to the
    workflow's project again (``client_paths``) before they are checked in its view, which makes them
    full keys once more."""
    fields = {**loaded.record, **change.fields}
    project = loaded.record.get("project") or DEFAULT_PROJECT
    view = workflow_storage(storage, loaded.record)
    results = {
        step_id: json.loads(fields[OUTCOME + step_id]).get("result") or {}
        for step_id, state in states.items()
        if state == COMPLETE and OUTCOME + step_id in fields
    }
    record, starts = loaded.record, []
    for step in loaded.steps:
        if states[step.id] != PENDING or not set(step.depends_on) <= results.keys():
            continue
        try:
            resolved = client_paths(resolve(step.arguments, results), project)
            arguments = await _checked_arguments(step, resolved, view, settings, record.get("request_id") or None)
        except (StepInvalid, ReferenceError_) as exc:
            reason = str(exc)
        except RecipesUnavailable as exc:
            # Without the listing a project's patch cannot be confined to the project: it never runs
            # unchecked, and a step cannot wait unseen, so it fails saying why.
            reason = f"step {step.id!r}: {exc}; an ifcpatch step is checked when it starts: run the workflow again"
        else:
            reason = ""
        if reason:
            change.states[step.id] = states[step.id] = FAILED
            change.fields[INVALID + step.id] = reason
            return
        starts.append(NewJob(
            step.operation,
            arguments,
            step_job_id(workflow_id, step.id),
            request_id=record.get("request_id") or None,
            priority=record.get("priority", "normal"),  # type: ignore[arg-type]
            due_ms=int(record["due_ms"]) if record.get("due_ms") else None,
            project=project,
            meta={"workflow_id": workflow_id, "workflow_step": step.id},
        ))
    for job in starts:
        change.jobs.append(job)
        change.states[job.meta["workflow_step"]] = states[job.meta["workflow_step"]] = ENQUEUED


def _failing(loaded: Loaded, states: dict[str, str], change: Change) -> bool:
    """A step failed (or was cancelled, aborted, lost, invalid): skip what has not started, end failed."""
    failing = [s.id for s in loaded.steps if states[s.id] in FAILING]
    if not failing:
        return False
    for step_id, state in states.items():
        if state == PENDING:
            change.states[step_id] = SKIPPED
    change.finish = ("failed", f"step {failing[0]!r} {states[failing[0]]}")
    return True


async def _decide_advance(
    redis: ArqRedis, settings: Settings, storage: Storage, workflow_id: str, loaded: Loaded
) -> Change:
    change = Change()
    enqueued = [step_job_id(workflow_id, s.id) for s in loaded.steps if loaded.state(s.id) == ENQUEUED]
    views = {v.job_id: v for v in await job_store.get_many(redis, enqueued)}
    _copied(workflow_id, loaded, views, change)
    if loaded.status != RUNNING:
        return change  # ended: only outcomes of steps still running at the end are copied
    states = {s.id: change.states.get(s.id, loaded.state(s.id)) for s in loaded.steps}
    if _failing(loaded, states, change):
        return change
    await _started(settings, storage, workflow_id, loaded, states, change)
    if not _failing(loaded, states, change) and all(st == COMPLETE for st in states.values()):
        change.finish = (COMPLETE, "")
    return change


async def advance(redis: ArqRedis, settings: Settings, workflow_id: str, storage: Storage) -> str | None:
    """Copy ended steps' outcomes, start what can start, skip what cannot, finish the workflow when
    it is over; returns its status (None when it is gone, or when other writers kept winning).
    ``storage`` (the whole store, or any view of it: the workflow's own view is made from its record)
    pins the inputs of the steps that start."""
    async def decide(loaded: Loaded) -> Change:
        return await _decide_advance(redis, settings, storage, workflow_id, loaded)

    try:
        done = await transact(redis, settings, workflow_id, decide)
    except Contended:
        log.warning("workflow.contended", workflow_id=workflow_id)
        return None
    if done is None:
        return None
    loaded, change = done
    for job in change.jobs:
        log.info("workflow.step_enqueued", workflow_id=workflow_id, step=job.meta["workflow_step"], job_id=job.job_id)
    for name, error in change.fields.items():
        if name.startswith(INVALID):
            log.warning("workflow.step_invalid", workflow_id=workflow_id, step=name.removeprefix(INVALID), error=error)
    return await _ended(redis, workflow_id, loaded, change)


async def _ended(redis: ArqRedis, workflow_id: str, loaded: Loaded, change: Change) -> str:
    if change.finish is None:
        return loaded.status
    status, error = change.finish
    log.info("workflow.finished", workflow_id=workflow_id, status=status, error=error or None)
    if loaded.record.get("callback_url"):
        finished = now_ms()
        await job_store.schedule_delivery(redis, "workflow", workflow_id, finished, DEFAULT_QUEUE)
    return status


async def cancel(redis: ArqRedis, settings: Settings, workflow_id: str, storage: Storage) -> str | None:
    """Cancel a running workflow: its pending steps never start, its started steps' jobs are
    cancelled (queued) or aborted (running). Returns the status it had (``running`` when this call
    cancelled it), or None when there is no such workflow.

    The cancel is one transaction over the workflow's keys, as every step start is: a step started
    before it is seen here and its job cancelled; none can start after it."""
    async def decide(loaded: Loaded) -> Change:
        if loaded.status != RUNNING:
            return Change()
        pending = {s.id: CANCELLED for s in loaded.steps if loaded.state(s.id) == PENDING}
        return Change(states=pending, finish=("cancelled", "cancelled by request"))

    done = await transact(redis, settings, workflow_id, decide)
    if done is None:
        return None
    loaded, change = done
    if not change:
        return loaded.status
    for step in loaded.steps:
        if loaded.state(step.id) == ENQUEUED:
            await job_store.cancel(redis, settings, step_job_id(workflow_id, step.id))
    await advance(redis, settings, workflow_id, storage)  # copies the outcomes of jobs cancelled before they started
    await _ended(redis, workflow_id, loaded, change)  # the webhook then shows those steps cancelled
    return RUNNING


def _step_view(workflow_id: str, loaded: Loaded, step: Step, job: JobView | None) -> dict[str, Any]:
    state, outcome = loaded.state(step.id), loaded.outcome(step.id)
    base = {"id": step.id, "operation": step.operation.value, "depends_on": step.depends_on}
    if state == ENQUEUED:  # its job is the truth until it ends
        if job is None:
            return {**base, "status": LOST, "job_id": step_job_id(workflow_id, step.id), "result": None,
                    "error": LOST_ERROR}
        error = job.error.model_dump() if job.error else None
        return {**base, "status": job.status.value, "job_id": job.job_id, "result": job.result, "error": error}
    if outcome is not None:
        return {**base, "status": state, "job_id": step_job_id(workflow_id, step.id), "result": outcome["result"],
                "error": outcome["error"]}
    invalid = loaded.record.get(INVALID + step.id)
    return {**base, "status": state, "job_id": None, "result": None,
            "error": {"type": "invalid_step", "message": invalid} if invalid else None}


async def view(redis: ArqRedis, workflow_id: str) -> dict[str, Any] | None:
    """The whole graph with each step's status, job and (when ended) result or error."""
    loaded = await read(redis, workflow_id)
    if loaded is None:
        return None
    enqueued = [step_job_id(workflow_id, s.id) for s in loaded.steps if loaded.state(s.id) == ENQUEUED]
    jobs = {v.job_id: v for v in await job_store.get_many(redis, enqueued)}
    steps = [_step_view(workflow_id, loaded, s, jobs.get(step_job_id(workflow_id, s.id))) for s in loaded.steps]
    record = loaded.record
    return {
        "workflow_id": workflow_id,
        "project": record.get("project") or DEFAULT_PROJECT,
        "status": record["status"],
        "error": record.get("error") or None,
        "created_at": int(record["created_at"]),
        "finished_at": int(record["finished_at"]) if record.get("finished_at") else None,
        "steps": steps,
        "terminal": record["status"] != RUNNING and all(s["status"] in SETTLED for s in steps),
    }
