"""Recurring schedules of jobs or workflows: create, list, pause, resume, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path

from service.deps import ApiKeyDep, RedisDep
from store.job_store import now_ms
from workflows import schedules
from workflows.schedules import ScheduleRequest

router = APIRouter(prefix="/schedules", tags=["schedules"])
ScheduleId = Annotated[str, Path(pattern=r"^[a-f0-9]{32}$")]


async def _get(redis: RedisDep, schedule_id: str) -> dict[str, Any]:
    found = await schedules.get(redis, schedule_id)
    if found is None:
        raise HTTPException(404, f"schedule {schedule_id} not found")
    return found


@router.post("", status_code=201)
async def create_schedule(body: ScheduleRequest, redis: RedisDep, _: ApiKeyDep) -> dict[str, Any]:
    """Run a job or workflow template at every slot of a cron expression (e.g. a nightly IDS check)."""
    return await schedules.create(redis, body)


@router.get("")
async def list_schedules(redis: RedisDep, _: ApiKeyDep) -> list[dict[str, Any]]:
    """Every schedule with its next run."""
    return [schedules.present(s) for s in await schedules.list_all(redis)]


@router.get("/{schedule_id}")
async def get_schedule(schedule_id: ScheduleId, redis: RedisDep, _: ApiKeyDep) -> dict[str, Any]:
    """One schedule, with its last and next run."""
    return schedules.present(await _get(redis, schedule_id))


@router.post("/{schedule_id}/pause")
async def pause_schedule(schedule_id: ScheduleId, redis: RedisDep, _: ApiKeyDep) -> dict[str, Any]:
    """Stop firing until resumed; slots passed while paused are not made up."""
    schedule = await _get(redis, schedule_id)
    schedule["paused"] = True
    await schedules.save(redis, schedule)
    return schedules.present(schedule)


@router.post("/{schedule_id}/resume")
async def resume_schedule(schedule_id: ScheduleId, redis: RedisDep, _: ApiKeyDep) -> dict[str, Any]:
    """Fire again from the next slot on."""
    schedule = await _get(redis, schedule_id)
    schedule["paused"] = False
    schedule["last_slot"] = max(schedule["last_slot"], now_ms())  # no catch-up of paused slots
    await schedules.save(redis, schedule)
    return schedules.present(schedule)


@router.delete("/{schedule_id}", status_code=204)
async def delete_schedule(schedule_id: ScheduleId, redis: RedisDep, _: ApiKeyDep) -> None:
    """Delete a schedule; jobs it already made are not touched."""
    if not await schedules.delete(redis, schedule_id):
        raise HTTPException(404, f"schedule {schedule_id} not found")
