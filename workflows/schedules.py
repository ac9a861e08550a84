"""Recurring schedules: a cron expression and a job or workflow template, fired once per slot.

Every worker runs the same check every few seconds (an arq cron job); a slot is fired by whichever
worker claims it first in Redis, and the job it makes has an id derived from the slot, so a slot can
never run twice even if two workers raced past the claim.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from arq import ArqRedis
from croniter import croniter
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from contracts.files import PathRefused, normalize_paths
from contracts.operations import OPERATIONS, Operation
from contracts.requests import REQUEST_MODELS
from settings import Settings
from store import job_store, keys
from store.job_store import NewJob, Priority, now_ms
from workflows.engine import StepInvalid, create_workflow
from workflows.model import WorkflowRequest

log = structlog.get_logger("workflows.schedules")


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


def _next_run(schedule: dict[str, Any]) -> str | None:
    if schedule["paused"]:
        return None
    now = datetime.now(ZoneInfo(schedule["timezone"]))
    upcoming: datetime = croniter(schedule["cron"], now).get_next(datetime)
    return upcoming.astimezone(UTC).isoformat()


def present(schedule: dict[str, Any]) -> dict[str, Any]:
    return {**schedule, "next_run": _next_run(schedule)}


async def create(redis: ArqRedis, body: ScheduleRequest) -> dict[str, Any]:
    schedule = {"id": uuid.uuid4().hex, **body.model_dump(mode="json"), "created_at": now_ms(), "last_slot": 0,
                "last_fired": None, "last_error": None}
    await redis.hset(keys.SCHEDULES, schedule["id"], json.dumps(schedule))
    return present(schedule)


async def get(redis: ArqRedis, schedule_id: str) -> dict[str, Any] | None:
    raw = await redis.hget(keys.SCHEDULES, schedule_id)
    return json.loads(raw) if raw else None


async def list_all(redis: ArqRedis) -> list[dict[str, Any]]:
    raw = await redis.hgetall(keys.SCHEDULES)
    return sorted((json.loads(v) for v in raw.values()), key=lambda s: s["created_at"])


async def save(redis: ArqRedis, schedule: dict[str, Any]) -> None:
    await redis.hset(keys.SCHEDULES, schedule["id"], json.dumps(schedule))


async def delete(redis: ArqRedis, schedule_id: str) -> bool:
    return bool(await redis.hdel(keys.SCHEDULES, schedule_id))


def _due_slot(schedule: dict[str, Any], now: datetime) -> int | None:
    """The latest slot (epoch ms) at or before ``now`` not fired yet, or None."""
    local = now.astimezone(ZoneInfo(schedule["timezone"]))
    slot = int(croniter(schedule["cron"], local).get_prev(datetime).timestamp() * 1000)
    if slot <= max(schedule["last_slot"], schedule["created_at"]):
        return None
    return slot


async def fire_due(redis: ArqRedis, settings: Settings) -> int:
    """Fire every schedule whose latest slot has not been fired; returns how many this call fired."""
    fired = 0
    now = datetime.now(UTC)
    for schedule in await list_all(redis):
        if schedule["paused"]:
            continue
        slot = _due_slot(schedule, now)
        if slot is None:
            continue
        claimed = await redis.set(f"{keys.SCHEDULE_SLOT}{schedule['id']}:{slot}", "1", nx=True, ex=2 * 86400)
        if not claimed:
            continue
        error = await _fire(redis, settings, schedule, slot)
        current = await get(redis, schedule["id"])  # it may have been paused or deleted meanwhile
        if current is not None:
            current.update(last_slot=slot, last_fired=now_ms(), last_error=error)
            await save(redis, current)
        fired += 1
    return fired


async def _fire(redis: ArqRedis, settings: Settings, schedule: dict[str, Any], slot: int) -> str | None:
    try:
        if schedule["job"] is not None:
            template = JobTemplate.model_validate(schedule["job"])
            request = REQUEST_MODELS[template.operation].model_validate(template.arguments)
            normalize_paths(request, settings.data_dir, OPERATIONS[template.operation].service)
            job_id = f"sched-{schedule['id']}-{slot}"
            await job_store.create(
                redis,
                settings,
                NewJob(template.operation, request.model_dump(mode="json", by_alias=True), job_id,
                       priority=template.priority, meta={"schedule_id": schedule["id"]}),
            )
            log.info("schedule.fired", schedule_id=schedule["id"], slot=slot, job_id=job_id)
        else:
            workflow_id = await create_workflow(
                redis, settings, WorkflowRequest.model_validate(schedule["workflow"]), None
            )
            log.info("schedule.fired", schedule_id=schedule["id"], slot=slot, workflow_id=workflow_id)
    except (ValidationError, PathRefused, StepInvalid) as exc:
        log.warning("schedule.fire_failed", schedule_id=schedule["id"], slot=slot, error=str(exc))
        return str(exc)[:500]
    return None
