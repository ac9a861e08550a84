"""Recurring schedules: a cron expression and a job or workflow template, fired once per slot.

Every worker runs the same check every few seconds (an arq cron job); a slot is fired by whichever
worker claims it first in Redis, and the job it makes has an id derived from the slot, so a slot can
never run twice even if two workers raced past the claim. The check reads only the schedules due
(``workflows/schedule_store.py``: an index by next slot), so schedules not due cost nothing.

A schedule belongs to a project (``project``; ``default`` for one made before projects existed): what
it fires is that project's, its paths (an ifcpatch job's recipe arguments too) checked in the project's
view of the store when fired, or in the whole store when its ``scope`` is ``store`` (made by an admin of
``default``, or before projects existed).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from arq import ArqRedis
from croniter import croniter
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from access.grants import DEFAULT_PROJECT, check_project
from contracts.compat_requests import IfcPatchRequest
from contracts.files import PathRefused
from contracts.operations import OPERATIONS, Operation
from contracts.patch_check import PatchRefused, RecipesUnavailable, check_patch_job
from contracts.requests import REQUEST_MODELS
from contracts.stored_paths import check_paths
from settings import Settings
from storage import Storage
from store import job_store, keys
from store.job_store import NewJob, Priority, now_ms
from workflows import schedule_store as store
from workflows.engine import PROJECT_SCOPE, STORE_SCOPE, StepInvalid, create_workflow, workflow_storage
from workflows.model import WorkflowRequest

log = structlog.get_logger("workflows.schedules")

# The stats field (beside the job counters, read by /metrics) counting slots never fired.
SKIPPED_STAT = "schedules:skipped_slots"
SKIP_COUNT_MAX = 10_000


class JobTemplate(BaseModel):
    operation: Operation
    arguments: dict[str, Any]
    priority: Priority = "normal"

    @model_validator(mode="after")
    def _valid_request(self) -> JobTemplate:
        REQUEST_MODELS[self.operation].model_validate(self.arguments)  # input files are checked when fired
        return self


class ScheduleRequest(BaseModel):
    """A cron expression (5 fields, or 6 with seconds last) and what to run at each of its slots."""

    name: str = Field(min_length=1, max_length=200)
    cron: str = Field(max_length=200)
    timezone: str = "UTC"
    job: JobTemplate | None = None
    workflow: WorkflowRequest | None = None
    paused: bool = False

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError("not a cron expression, e.g. '0 2 * * *' for 02:00 every day")
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _one_template(self) -> ScheduleRequest:
        if (self.job is None) == (self.workflow is None):
            raise ValueError("give exactly one of job and workflow")
        return self


def _zone(schedule: dict[str, Any]) -> ZoneInfo:
    return ZoneInfo(schedule["timezone"])


def _slot_after(schedule: dict[str, Any], after_ms: int) -> int:
    """The schedule's first slot (epoch ms) strictly after ``after_ms``."""
    start = datetime.fromtimestamp(after_ms / 1000, _zone(schedule))
    return int(croniter(schedule["cron"], start).get_next(datetime).timestamp() * 1000)


def _index_score(schedule: dict[str, Any]) -> int | None:
    """Where the schedule stands in the due index: its first slot not fired yet (None: paused).

    A pure function of the stored schedule, so the index can always be rebuilt from the hash."""
    if schedule["paused"]:
        return None
    return _slot_after(schedule, max(schedule["last_slot"], schedule["created_at"]))


def _next_run(schedule: dict[str, Any]) -> str | None:
    if schedule["paused"]:
        return None
    upcoming = _slot_after(schedule, max(now_ms(), schedule["last_slot"]))
    return datetime.fromtimestamp(upcoming / 1000, UTC).isoformat()


def present(schedule: dict[str, Any]) -> dict[str, Any]:
    return {"project": DEFAULT_PROJECT, **schedule, "next_run": _next_run(schedule)}


def project_of(schedule: dict[str, Any]) -> str:
    """The schedule's project (``default`` for one made before projects existed)."""
    return str(schedule.get("project") or DEFAULT_PROJECT)


class ScheduleLimit(Exception):
    """As many schedules as ``IFCFLOW_MAX_SCHEDULES`` exist already."""


async def create(
    redis: ArqRedis, settings: Settings, body: ScheduleRequest, project: str = DEFAULT_PROJECT, *,
    whole_store: bool = False,
) -> dict[str, Any]:
    """Record a new schedule of ``project`` (and its place in the due index), or ``ScheduleLimit``.
    ``whole_store`` (an admin of ``default``: ``access.scope.sees_whole_store``) fires it with its paths
    checked in the whole store rather than the project's view."""
    scope = STORE_SCOPE if whole_store and check_project(project) == DEFAULT_PROJECT else PROJECT_SCOPE
    schedule = {"id": uuid.uuid4().hex, **body.model_dump(mode="json"), "created_at": now_ms(), "last_slot": 0,
                "last_fired": None, "last_error": None, "last_skipped": None, "project": project, "scope": scope}
    score = _index_score(schedule)
    made = await store.CREATE(
        redis, [keys.SCHEDULES, store.DUE, store.INDEXED],
        [settings.max_schedules, schedule["id"], json.dumps(schedule), "" if score is None else score],
    )
    if not made:
        raise ScheduleLimit(settings.max_schedules)
    return present(schedule)


async def get(redis: ArqRedis, schedule_id: str) -> dict[str, Any] | None:
    raw = await redis.hget(keys.SCHEDULES, schedule_id)
    return json.loads(raw) if raw else None


async def list_all(redis: ArqRedis) -> list[dict[str, Any]]:
    raw = await redis.hgetall(keys.SCHEDULES)
    return sorted((json.loads(v) for v in raw.values()), key=lambda s: s["created_at"])


async def update(
    redis: ArqRedis, schedule_id: str, change: Callable[[dict[str, Any]], None]
) -> dict[str, Any] | None:
    """Apply ``change`` to the stored schedule and move it in the due index, atomically against any
    other writer of the same schedule (compare and set, again on a lost race); None when it is gone."""
    while True:
        raw = await redis.hget(keys.SCHEDULES, schedule_id)
        if raw is None:
            return None
        schedule: dict[str, Any] = json.loads(raw)
        change(schedule)
        score = _index_score(schedule)
        swapped = await store.SWAP(
            redis, [keys.SCHEDULES, store.DUE], [schedule_id, raw, json.dumps(schedule), "" if score is None else score]
        )
        if swapped:
            return schedule


async def delete(redis: ArqRedis, schedule_id: str) -> bool:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hdel(keys.SCHEDULES, schedule_id)
        pipe.zrem(store.DUE, schedule_id)
        deleted, _ = await pipe.execute()
    return bool(deleted)


def _due_slot(schedule: dict[str, Any], now: datetime) -> int | None:
    """The latest slot (epoch ms) at or before ``now`` not fired yet, or None."""
    local = now.astimezone(_zone(schedule))
    slot = int(croniter(schedule["cron"], local).get_prev(datetime).timestamp() * 1000)
    if slot <= max(schedule["last_slot"], schedule["created_at"]):
        return None
    return slot


def skipped_slots(schedule: dict[str, Any], slot: int) -> int:
    """Slots after the last fired one and before ``slot``: due while no worker checked (counted up to
    ``SKIP_COUNT_MAX``, so a per-second schedule left for a year costs no more than that)."""
    start = datetime.fromtimestamp(max(schedule["last_slot"], schedule["created_at"]) / 1000, _zone(schedule))
    slots = croniter(schedule["cron"], start)
    for n in range(SKIP_COUNT_MAX):
        if int(slots.get_next(datetime).timestamp() * 1000) >= slot:
            return n
    return SKIP_COUNT_MAX


async def fire_due(redis: ArqRedis, settings: Settings, storage: Storage) -> int:
    """Fire every schedule whose latest slot has not been fired; returns how many this call fired.

    Reads only the schedules due now (the index by next slot): any number of schedules not due
    costs one ``ZRANGEBYSCORE``. Of the slots due since the last fire only the latest runs; the
    others are recorded as skipped (``last_skipped``, ``ifcflow_schedule_slots_skipped_total``). A fired
    job pins its inputs' latest versions in ``storage`` then."""
    now = datetime.now(UTC)
    fired = 0
    for schedule_id, schedule in await store.due(redis, int(now.timestamp() * 1000), _index_score):
        if schedule is None:
            await redis.zrem(store.DUE, schedule_id)  # deleted meanwhile
            continue
        slot = _due_slot(schedule, now) if not schedule["paused"] else None
        if slot is None:
            await update(redis, schedule_id, lambda s: None)  # the index was behind: put it right
            continue
        claimed = await redis.set(f"{keys.SCHEDULE_SLOT}{schedule_id}:{slot}", "1", nx=True, ex=2 * 86400)
        if not claimed:
            continue  # another worker fires this slot, and moves the schedule on in the index
        skipped = skipped_slots(schedule, slot)
        error = await _fire(redis, settings, storage, schedule, slot)
        fired_at = now_ms()

        def fired_now(current: dict[str, Any], slot: int = slot, error: str | None = error,
                      skipped: int = skipped, fired_at: int = fired_at) -> None:
            current.update(last_slot=max(current["last_slot"], slot), last_fired=fired_at, last_error=error)
            if skipped:
                current["last_skipped"] = {"slots": skipped, "before_slot": slot, "recorded_at": fired_at}

        await update(redis, schedule_id, fired_now)  # it may have been paused or deleted meanwhile
        if skipped:
            await redis.hincrby(keys.STATS_COUNTS, SKIPPED_STAT, skipped)
            log.info("schedule.slots_skipped", schedule_id=schedule_id, slots=skipped, fired_slot=slot)
        fired += 1
    return fired


async def _fire(
    redis: ArqRedis, settings: Settings, storage: Storage, schedule: dict[str, Any], slot: int
) -> str | None:
    project = project_of(schedule)
    view = workflow_storage(storage, {"project": project, "scope": str(schedule.get("scope") or STORE_SCOPE)})
    try:
        if schedule["job"] is not None:
            template = JobTemplate.model_validate(schedule["job"])
            request = REQUEST_MODELS[template.operation].model_validate(template.arguments)
            service = OPERATIONS[template.operation].service
            await check_paths(view, request, service)
            if isinstance(request, IfcPatchRequest):  # its recipe's file arguments, as POST /patch/execute's
                await check_patch_job(settings, request, view)
            job_id = f"sched-{schedule['id']}-{slot}"
            await job_store.create(
                redis,
                settings,
                NewJob(template.operation, request.model_dump(mode="json", by_alias=True), job_id,
                       priority=template.priority, project=project, meta={"schedule_id": schedule["id"]}),
            )
            log.info("schedule.fired", schedule_id=schedule["id"], slot=slot, job_id=job_id)
        else:
            workflow_id = await create_workflow(
                redis, settings, WorkflowRequest.model_validate(schedule["workflow"]), None, view, project
            )
            log.info("schedule.fired", schedule_id=schedule["id"], slot=slot, workflow_id=workflow_id)
    except (PathRefused, PatchRefused) as exc:
        return _failed(schedule, slot, f"{'.'.join(map(str, exc.loc))}: {exc.message}")
    except (ValidationError, StepInvalid, RecipesUnavailable) as exc:
        # Without the recipe listing a project's patch is not fired unchecked: this slot is lost, the next fires.
        return _failed(schedule, slot, str(exc))
    return None


def _failed(schedule: dict[str, Any], slot: int, error: str) -> str:
    log.warning("schedule.fire_failed", schedule_id=schedule["id"], slot=slot, error=error)
    return error[:500]
