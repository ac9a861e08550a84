"""Workflows and schedules of a project (issue 22): steps are the project's jobs, their paths checked in
the project's view, earlier results translated back to it; schedules fire in their project. An ifcpatch
step's recipe arguments are checked there too, so without the recipe listing a project's patch is
refused (503), fails its step or its slot, and is never queued unchecked. A real worker (a process of
this test's own) and the stand-in service; ``create_workflow`` and ``fire_due`` are called in-process,
as the gateway and the worker's cron call them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from arq import ArqRedis

from access.scope import for_project
from contracts import patch_check
from contracts.patch_check import RecipesUnavailable
from settings import Settings
from storage.local import LocalStorage
from store import job_store, keys
from tests.conftest import API_KEY, Behaviour
from workflows import schedules
from workflows.engine import StepInvalid, create_workflow, step_job_id, view
from workflows.model import WorkflowRequest
from workflows.schedules import ScheduleRequest

T = TypeVar("T")
A_MODEL = "projects/a/uploads/model.ifc"
A_GLB = "projects/a/output/ifcconvert/model.glb"
A_KEY = "project-a-submit-key-0003"
DEFAULT_SUBMIT_KEY = "default-submit-key-0003"  # of default, and no admin: it sees no project's files
TWO_STEPS = {
    "steps": [
        {"id": "convert", "operation": "ifcconvert",
         "arguments": {"input_filename": "model.ifc", "output_filename": "model.glb"}},
        {"id": "report", "operation": "ifc2json",
         "arguments": {"filename": "${convert.output_files.0}", "output_filename": "report.json"}},
    ]
}


async def _chunks(data: bytes) -> AsyncIterable[bytes]:
    yield data


async def until(check: Callable[[], Awaitable[T]], timeout: float = 30.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := await check():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    # A worker of this test's own (the shared one's checks go through the gateway, which this file never needs).
    keys = f"{API_KEY},a:submit:{A_KEY},default:submit:{DEFAULT_SUBMIT_KEY}"
    return {**env, "IFCFLOW_RESULT_TTL": "600", "IFCFLOW_API_KEYS": keys}


@pytest.fixture
async def settings(redis_url: str, data_dir: Path, storage: LocalStorage) -> Settings:
    a = for_project(storage, "a")
    await a.receive("uploads/model.ifc", _chunks(b"ISO-10303-21;\nEND-ISO-10303-21;\n"), 1000)
    await a.receive("output/ifcconvert/model.glb", _chunks(b"glb"), 1000)  # what the stand-in "writes"
    return Settings(redis_url=redis_url, data_dir=data_dir, result_ttl=600)


async def _ended(redis: ArqRedis, workflow_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        found = await view(redis, workflow_id)
        return found if found and found["status"] != "running" else None

    return await until(done, what="the workflow to end")


async def test_a_projects_workflow_runs_its_steps_as_project_jobs_in_the_projects_folder(
    aredis: ArqRedis, settings: Settings, storage: LocalStorage, worker: Any, stub: Any
) -> None:
    stub.will("/ifcconvert", Behaviour(body={"output_files": [A_GLB]}))
    stub.will("/ifc2json", Behaviour(body={"entity_count": 1}))
    workflow = WorkflowRequest.model_validate(TWO_STEPS)
    workflow_id = await create_workflow(aredis, settings, workflow, None, for_project(storage, "a"), "a")
    wf = await _ended(aredis, workflow_id)
    assert wf["status"] == "complete", wf
    assert wf["project"] == "a"
    convert = stub.calls_to("/ifcconvert")[0]["body"]
    assert (convert["input_filename"], convert["output_filename"]) == (A_MODEL, A_GLB)
    assert list(convert["input_version_ids"]) == [A_MODEL]
    report = stub.calls_to("/ifc2json")[0]["body"]
    assert report["filename"] == A_GLB  # the earlier result, checked again in a's view
    assert report["output_filename"] == "projects/a/output/ifc2json/report.json"
    for step in ("convert", "report"):
        job = await job_store.get(aredis, step_job_id(workflow_id, step))
        assert job is not None and job.project == "a"


async def test_a_result_naming_another_projects_file_fails_the_step_that_would_read_it(
    aredis: ArqRedis, settings: Settings, storage: LocalStorage, worker: Any, stub: Any
) -> None:
    await for_project(storage, "b").receive("uploads/secret.ifc", _chunks(b"b's"), 100)
    stub.will("/ifcconvert", Behaviour(body={"output_files": ["projects/b/uploads/secret.ifc"]}))
    workflow = WorkflowRequest.model_validate(TWO_STEPS)
    workflow_id = await create_workflow(aredis, settings, workflow, None, for_project(storage, "a"), "a")
    wf = await _ended(aredis, workflow_id)
    assert wf["status"] == "failed"
    assert [s["status"] for s in wf["steps"]] == ["complete", "failed"]
    assert "not found" in wf["steps"][1]["error"]["message"]
    assert stub.calls_to("/ifc2json") == []


async def test_a_workflow_naming_another_projects_file_is_refused(
    aredis: ArqRedis, settings: Settings, storage: LocalStorage
) -> None:
    steps = {"steps": [{"id": "c", "operation": "ifcconvert",
                        "arguments": {"input_filename": A_MODEL, "output_filename": "x.glb"}}]}
    for project in ("b", "default"):
        with pytest.raises(StepInvalid, match="not found"):
            await create_workflow(aredis, settings, WorkflowRequest.model_validate(steps), None,
                                  for_project(storage, project), project)
    # An admin of default (the whole store) names any project's file; a record from before projects is default's.
    workflow_id = await create_workflow(aredis, settings, WorkflowRequest.model_validate(steps), None, storage)
    wf = await view(aredis, workflow_id)
    assert wf is not None and wf["project"] == "default"
    await aredis.hdel(keys.workflow(workflow_id), "project", "scope")
    assert (await view(aredis, workflow_id))["project"] == "default"  # type: ignore[index]


def _schedule(**template: Any) -> ScheduleRequest:
    return ScheduleRequest.model_validate({"name": "every second", "cron": "* * * * * *", **template})


CONVERT_JOB = {"job": {"operation": "ifcconvert",
                       "arguments": {"input_filename": "model.ifc", "output_filename": "nightly.glb"}}}


async def _fired(redis: ArqRedis, settings: Settings, storage: LocalStorage, schedule_id: str) -> dict[str, Any]:
    async def fired() -> dict[str, Any] | None:
        await schedules.fire_due(redis, settings, storage)
        found = await schedules.get(redis, schedule_id)
        return found if found and found["last_fired"] else None

    return await until(fired, timeout=10, what="the schedule to fire")


async def test_a_schedule_fires_its_job_in_its_project(
    aredis: ArqRedis, settings: Settings, storage: LocalStorage
) -> None:
    made = await schedules.create(aredis, settings, _schedule(**CONVERT_JOB), project="a")
    assert made["project"] == "a"
    fired = await _fired(aredis, settings, storage, made["id"])
    assert fired["last_error"] is None
    job = await job_store.get(aredis, f"sched-{made['id']}-{fired['last_slot']}")
    assert job is not None and job.project == "a"
    assert job.arguments["input_filename"] == A_MODEL  # type: ignore[index]
    assert job.arguments["output_filename"] == "projects/a/output/ifcconvert/nightly.glb"  # type: ignore[index]


async def test_a_schedule_of_a_project_without_the_file_fails_to_fire(
    aredis: ArqRedis, settings: Settings, storage: LocalStorage
) -> None:
    made = await schedules.create(aredis, settings, _schedule(**CONVERT_JOB), project="b")
    fired = await _fired(aredis, settings, storage, made["id"])
    assert "not found" in fired["last_error"]
    assert await job_store.get(aredis, f"sched-{made['id']}-{fired['last_slot']}") is None


async def test_a_workflow_schedule_makes_its_workflow_in_its_project(
    aredis: ArqRedis, settings: Settings, storage: LocalStorage
) -> None:
    one_step = {"steps": TWO_STEPS["steps"][:1]}
    made = await schedules.create(aredis, settings, _schedule(workflow=one_step), project="a")
    fired = await _fired(aredis, settings, storage, made["id"])
    assert fired["last_error"] is None
    (workflow_id,) = [w.decode() for w in await aredis.smembers(keys.ACTIVE_WORKFLOWS)]
    wf = await view(aredis, workflow_id)
    assert wf is not None and wf["project"] == "a"
    job = await job_store.get(aredis, step_job_id(workflow_id, "convert"))
    assert job is not None and job.project == "a" and job.arguments["input_filename"] == A_MODEL  # type: ignore[index]


async def test_a_schedule_from_before_projects_fires_in_the_default_project_on_the_whole_store(
    aredis: ArqRedis, settings: Settings, storage: LocalStorage
) -> None:
    template = {"job": {"operation": "ifcconvert",
                        "arguments": {"input_filename": A_MODEL, "output_filename": "old.glb"}}}
    made = await schedules.create(aredis, settings, _schedule(**template))
    await schedules.update(aredis, made["id"], lambda s: [s.pop("project"), s.pop("scope")])
    legacy = await schedules.get(aredis, made["id"])
    assert legacy is not None and "project" not in legacy and schedules.present(legacy)["project"] == "default"
    fired = await _fired(aredis, settings, storage, made["id"])
    assert fired["last_error"] is None
    job = await job_store.get(aredis, f"sched-{made['id']}-{fired['last_slot']}")
    assert job is not None and job.project in (None, "default")
    assert job.arguments["input_filename"] == A_MODEL  # type: ignore[index]
    # Made by a submit key of default now, the same schedule sees no project's files.
    scoped = await schedules.create(aredis, settings, _schedule(**template), project="default")
    assert "not found" in (await _fired(aredis, settings, storage, scoped["id"]))["last_error"]


PATCH = {"input_file": "model.ifc", "output_file": "walls.ifc", "recipe": "ExtractElements", "arguments": ["IfcWall"]}
PATCH_STEP = {"id": "patch", "operation": "ifcpatch", "arguments": PATCH}


@pytest.fixture
def no_listing(stub: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The ifcpatch service (the stand-in) answers no recipe listing, and none is cached in this process."""
    monkeypatch.setattr(patch_check, "_cache", {})
    stub.will("/patch/recipes/list", *[Behaviour(status=503, body={"detail": "starting"}) for _ in range(20)])
    return stub


def _with_service(settings: Settings, stub: Any) -> Settings:
    return settings.model_copy(update={"ifcpatch_url": stub.url})


async def test_a_projects_patch_step_is_refused_while_the_recipe_listing_is_unavailable_and_nothing_is_recorded(
    aredis: ArqRedis, settings: Settings, storage: LocalStorage, no_listing: Any
) -> None:
    workflow = WorkflowRequest.model_validate({"steps": [PATCH_STEP]})
    for project in ("a", "default"):  # default's view (a key that is no admin) is confined too
        with pytest.raises(RecipesUnavailable, match="503"):
            await create_workflow(aredis, _with_service(settings, no_listing), workflow, None,
                                  for_project(storage, project), project)
    assert not await aredis.smembers(keys.ACTIVE_WORKFLOWS)
    assert not [k async for k in aredis.scan_iter(keys.JOB_META + "*")]
    # An admin of default names any file of the store anyway: its patch waits for the service unchecked.
    whole = WorkflowRequest.model_validate({"steps": [{**PATCH_STEP, "arguments": {**PATCH, "input_file": A_MODEL}}]})
    workflow_id = await create_workflow(aredis, _with_service(settings, no_listing), whole, None, storage)
    job = await job_store.get(aredis, step_job_id(workflow_id, "patch"))
    assert job is not None and job.arguments["arguments"] == ["IfcWall"]  # type: ignore[index]


async def test_a_patch_step_starting_while_the_recipe_listing_is_unavailable_fails_saying_so(
    aredis: ArqRedis, settings: Settings, storage: LocalStorage, worker: Any, no_listing: Any
) -> None:
    no_listing.will("/ifcconvert", Behaviour(body={"output_files": [A_GLB]}))
    later = {**PATCH_STEP, "arguments": {**PATCH, "input_file": "${convert.output_files.0}"}}
    workflow = WorkflowRequest.model_validate({"steps": [TWO_STEPS["steps"][0], later]})
    workflow_id = await create_workflow(aredis, _with_service(settings, no_listing), workflow, None,
                                        for_project(storage, "a"), "a")
    wf = await _ended(aredis, workflow_id)
    assert wf["status"] == "failed"
    assert [s["status"] for s in wf["steps"]] == ["complete", "failed"]
    assert wf["steps"][1]["job_id"] is None
    assert "ifcpatch service answered 503" in wf["steps"][1]["error"]["message"], wf["steps"][1]
    assert "run the workflow again" in wf["steps"][1]["error"]["message"]
    assert no_listing.calls_to("/patch/execute") == []


async def test_a_projects_patch_schedule_does_not_fire_while_the_recipe_listing_is_unavailable(
    aredis: ArqRedis, settings: Settings, storage: LocalStorage, no_listing: Any
) -> None:
    made = await schedules.create(aredis, settings, _schedule(job={"operation": "ifcpatch", "arguments": PATCH}),
                                  project="a")
    fired = await _fired(aredis, _with_service(settings, no_listing), storage, made["id"])
    assert "ifcpatch service answered 503" in fired["last_error"], fired
    assert await job_store.get(aredis, f"sched-{made['id']}-{fired['last_slot']}") is None


async def test_the_gateway_answers_503_for_a_projects_patch_while_the_recipe_listing_is_unavailable(
    client: httpx.AsyncClient, aredis: ArqRedis, storage: LocalStorage, no_listing: Any
) -> None:
    await for_project(storage, "a").receive("uploads/model.ifc", _chunks(b"ISO-10303-21;\n"), 100)
    for key in (A_KEY, DEFAULT_SUBMIT_KEY):
        headers = {"X-API-Key": key}
        r = await client.post("/workflows", json={"steps": [PATCH_STEP]}, headers=headers)
        assert r.status_code == 503 and r.headers["retry-after"] == "5", (key, r.text)
        assert "ifcpatch service answered 503" in r.text
        r = await client.post("/patch/execute", json=PATCH, headers=headers)
        assert r.status_code == 503, (key, r.text)
    assert no_listing.calls_to("/patch/recipes/list"), "refused for want of the listing, not for its paths"
    assert not await aredis.smembers(keys.ACTIVE_WORKFLOWS)
    assert not [k async for k in aredis.scan_iter(keys.JOB_META + "*")]
