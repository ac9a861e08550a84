"""Recurring schedules of jobs or workflows: create, list, pause, resume, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path

from service.deps import ApiKeyDep, RedisDep, SettingsDep
from store.job_store import now_ms
from workflows import schedules
from workflows.schedules import ScheduleLimit, ScheduleRequest

router = APIRouter(prefix="/schedules", tags=["schedules"])
ScheduleId = Annotated[str, Path(pattern=r"^[a-f0-9]{32}$")]


def _found(schedule: dict[str, Any] | None, schedule_id: str) -> dict[str, Any]:
    if schedule is None:
        raise HTTPException(404, f"schedule {schedule_id} not found")
    return schedules.present(schedule)


@router.post("", status_code=201)
async def create_schedule(
    body: ScheduleRequest, redis: RedisDep, settings: SettingsDep, _: ApiKeyDep
) -> dict[str, Any]:
    """Run a job or workflow template at every slot of a cron expression (e.g. a nightly IDS check);
    409 when ``IFCFLOW_MAX_SCHEDULES`` schedules exist already."""
    try:
        return await schedules.create(redis, settings, body)
    except ScheduleLimit:
        raise HTTPException(
            409, f"schedule limit reached: {settings.max_schedules} schedules exist (IFCFLOW_MAX_SCHEDULES); "
                 "delete one first",
        ) from None


@router.get("")
async def list_schedules(redis: RedisDep, _: ApiKeyDep) -> list[dict[str, Any]]:
    """Every schedule with its next run."""
    return [schedules.present(s) for s in await schedules.list_all(redis)]


@router.get("/{schedule_id}")
async def get_schedule(schedule_id: ScheduleId, redis: RedisDep, _: ApiKeyDep) -> dict[str, Any]:
    """One schedule, with its last and next run and its last skipped slots (``last_skipped``)."""
    return _found(await schedules.get(redis, schedule_id), schedule_id)


def _pause(schedule: dict[str, Any]) -> None:
    schedule["paused"] = True


def _resume(schedule: dict[str, Any]) -> None:
    if schedule["paused"]:
        schedule["paused"] = False
        schedule["last_slot"] = max(schedule["last_slot"], now_ms())  # no catch-up of paused slots


@router.post("/{schedule_id}/pause")
async def pause_schedule(schedule_id: ScheduleId, redis: RedisDep, _: ApiKeyDep) -> dict[str, Any]:
    """Stop firing until resumed; slots passed while paused are not made up."""
    return _found(await schedules.update(redis, schedule_id, _pause), schedule_id)


@router.post("/{schedule_id}/resume")
async def resume_schedule(schedule_id: ScheduleId, redis: RedisDep, _: ApiKeyDep) -> dict[str, Any]:
    """Fire again from the next slot on (slots passed while paused are neither fired nor counted skipped)."""
    return _found(await schedules.update(redis, schedule_id, _resume), schedule_id)


@router.delete("/{schedule_id}", status_code=204)
async def delete_schedule(schedule_id: ScheduleId, redis: RedisDep, _: ApiKeyDep) -> None:
    """Delete a schedule; jobs it already made are not touched."""
    if not await schedules.delete(redis, schedule_id):
        raise HTTPException(404, f"schedule {schedule_id} not found")
