"""Recurring schedules of jobs or workflows: create, list, pause, resume, delete."""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, HTTPException, Path, Query

from access.audit import audit
from access.grants import DEFAULT_PROJECT, Caller, check_project
from access.scope import client_paths, sees_whole_store
from service.deps import ApiKeyDep, RedisDep, SettingsDep, SubmitKeyDep
from store.job_store import now_ms
from workflows import schedules
from workflows.schedules import ScheduleLimit, ScheduleRequest

router = APIRouter(prefix="/schedules", tags=["schedules"])
ScheduleId = Annotated[str, Path(pattern=r"^[a-f0-9]{32}$")]


def _missing(schedule_id: str) -> HTTPException:
    # Another project's schedule is answered as a missing one: nothing says it exists.
    return HTTPException(404, f"schedule {schedule_id} not found")


def _sees(caller: Caller, schedule: dict[str, Any] | None) -> bool:
    return schedule is not None and caller.sees(schedule.get("project"))


def _shown(schedule: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """A schedule with its next run, its files named relative to the caller's project."""
    return cast(dict[str, Any], client_paths(schedules.present(schedule), caller.project))


def _found(schedule: dict[str, Any] | None, schedule_id: str, caller: Caller) -> dict[str, Any]:
    if schedule is None or not _sees(caller, schedule):
        raise _missing(schedule_id)
    return _shown(schedule, caller)


async def _owned(redis: RedisDep, schedule_id: str, caller: Caller) -> None:
    """404 unless the schedule exists and is the caller's to see (checked before it is changed)."""
    if not _sees(caller, await schedules.get(redis, schedule_id)):
        raise _missing(schedule_id)


@router.post("", status_code=201)
async def create_schedule(
    body: ScheduleRequest, redis: RedisDep, settings: SettingsDep, caller: SubmitKeyDep
) -> dict[str, Any]:
    """Run a job or workflow template at every slot of a cron expression (e.g. a nightly IDS check);
    409 when ``IFCFLOW_MAX_SCHEDULES`` schedules exist already. Its runs are the caller's project's."""
    try:
        made = await schedules.create(redis, settings, body, project=caller.project,
                                      whole_store=sees_whole_store(caller))
    except ScheduleLimit:
        raise HTTPException(
            409, f"schedule limit reached: {settings.max_schedules} schedules exist (IFCFLOW_MAX_SCHEDULES); "
                 "delete one first",
        ) from None
    audit(caller, "schedule.create", schedule_id=made["id"])
    return cast(dict[str, Any], client_paths(made, caller.project))


@router.get("")
async def list_schedules(
    redis: RedisDep, caller: ApiKeyDep,
    project: Annotated[str | None, Query(max_length=63, description="admin keys: only this project's")] = None,
) -> list[dict[str, Any]]:
    """Every schedule of the caller's project (an admin key: of every project, or of ``?project=``),
    with its next run."""
    if project is not None:
        try:
            check_project(project)
        except ValueError as exc:
            raise HTTPException(422, [{"loc": ["query", "project"], "msg": str(exc), "type": "value_error"}]) from None
    listed = [s for s in await schedules.list_all(redis) if _sees(caller, s)]
    if project is not None:
        listed = [s for s in listed if (s.get("project") or DEFAULT_PROJECT) == project]
    return [_shown(s, caller) for s in listed]


@router.get("/{schedule_id}")
async def get_schedule(schedule_id: ScheduleId, redis: RedisDep, caller: ApiKeyDep) -> dict[str, Any]:
    """One schedule, with its last and next run and its last skipped slots (``last_skipped``)."""
    return _found(await schedules.get(redis, schedule_id), schedule_id, caller)


def _pause(schedule: dict[str, Any]) -> None:
    schedule["paused"] = True


def _resume(schedule: dict[str, Any]) -> None:
    if schedule["paused"]:
        schedule["paused"] = False
        schedule["last_slot"] = max(schedule["last_slot"], now_ms())  # no catch-up of paused slots


@router.post("/{schedule_id}/pause")
async def pause_schedule(schedule_id: ScheduleId, redis: RedisDep, caller: SubmitKeyDep) -> dict[str, Any]:
    """Stop firing until resumed; slots passed while paused are not made up."""
    await _owned(redis, schedule_id, caller)
    shown = _found(await schedules.update(redis, schedule_id, _pause), schedule_id, caller)
    audit(caller, "schedule.pause", schedule_id=schedule_id)
    return shown


@router.post("/{schedule_id}/resume")
async def resume_schedule(schedule_id: ScheduleId, redis: RedisDep, caller: SubmitKeyDep) -> dict[str, Any]:
    """Fire again from the next slot on (slots passed while paused are neither fired nor counted skipped)."""
    await _owned(redis, schedule_id, caller)
    shown = _found(await schedules.update(redis, schedule_id, _resume), schedule_id, caller)
    audit(caller, "schedule.resume", schedule_id=schedule_id)
    return shown


@router.delete("/{schedule_id}", status_code=204)
async def delete_schedule(schedule_id: ScheduleId, redis: RedisDep, caller: SubmitKeyDep) -> None:
    """Delete a schedule; jobs it already made are not touched."""
    await _owned(redis, schedule_id, caller)
    if not await schedules.delete(redis, schedule_id):
        raise _missing(schedule_id)
    audit(caller, "schedule.delete", schedule_id=schedule_id)
