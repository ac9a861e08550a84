"""An ifcpatch recipe's file arguments inside a project's workflows and schedules (issue 22), through the
real pipeline: gateway, Redis, worker and the real IFC services on a data directory of the test's own.

A workflow's ifcpatch step (and a schedule's ifcpatch job) has its recipe arguments checked as
``POST /patch/execute`` checks them: in the caller's project, relative to it, sent on as full store keys.
Another project's file is "not found": a 422 naming the step and the argument at submit, nothing queued;
a step whose argument only becomes known from an earlier result fails when it starts, without a job; a
schedule's slot fails to fire. The service itself finds a project job's files only in its project.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import ifcopenshell
import pytest
import redis
from arq import ArqRedis

from contracts.operations import Operation
from settings import Settings
from store import job_store, keys
from store.job_store import NewJob
from tests.conftest import until
from tests.ifcservices.ifcmodels import WALLS, build_walls
from tests.real_pipeline import Pipeline, real_pipeline

pytest.importorskip("ifcpatch", reason="the ifcpatch service needs ifcpatch (pip install 'ifcpatch>=0.9,<0.10')")

ACME_KEY = "acme-submit-key-0002"
BETA_KEY = "beta-submit-key-0002"
ADMIN_KEY = "admin-key-of-default-0002"
MERGE = "MergeProjects"  # ifcpatch's recipe reading other files: its argument 0 is a list of paths
SECRET_WALL = f"beta-secret-{uuid.uuid4().hex[:8]}"  # a wall only beta's file has
BETA_FILE = "projects/beta/uploads/secret.ifc"
# Every way acme might name beta's file: as a store key, from the data directory's root, out of its folder.
BETA_FORMS = [BETA_FILE, f"/{BETA_FILE}", "../beta/uploads/secret.ifc", f"../../{BETA_FILE}", "link.ifc"]
WALL = (0.0, 0.0, False, 5.0, None)


def _model(*walls: str) -> bytes:
    return cast(str, build_walls(dict.fromkeys(walls, WALL)).to_string()).encode()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "uploads").mkdir(parents=True)
    return root


@pytest.fixture
def pipeline(redis_url: str, data: Path, tmp_path: Path, sync_redis: redis.Redis) -> Iterator[Pipeline]:
    api_keys = f"acme:submit:{ACME_KEY},beta:submit:{BETA_KEY},{ADMIN_KEY}"
    with real_pipeline(redis_url, data, tmp_path, sync_redis, IFCFLOW_API_KEYS=api_keys) as running:
        yield running


async def _upload(client: httpx.AsyncClient, name: str, content: bytes) -> None:
    r = await client.post("/upload/ifc", files={"file": (name, content)})
    assert r.status_code == 201 and r.json()["path"] == f"uploads/{name}", r.text


@pytest.fixture
async def acme(pipeline: Pipeline, data: Path) -> AsyncIterator[httpx.AsyncClient]:
    """acme's key, with acme's house.ifc and extra.ifc; beta's secret.ifc; default's own extra.ifc (a decoy
    that a path not made acme's would find); a link in acme's uploads to beta's file."""
    async with (
        httpx.AsyncClient(base_url=pipeline.url, headers={"X-API-Key": ACME_KEY}, timeout=60) as client,
        httpx.AsyncClient(base_url=pipeline.url, headers={"X-API-Key": BETA_KEY}, timeout=60) as beta,
        httpx.AsyncClient(base_url=pipeline.url, headers={"X-API-Key": ADMIN_KEY}, timeout=60) as admin,
    ):
        await _upload(beta, "secret.ifc", _model(SECRET_WALL))
        await _upload(admin, "extra.ifc", _model("Decoy"))
        await _upload(client, "house.ifc", build_walls(WALLS).to_string().encode())
        await _upload(client, "extra.ifc", _model("E", "F"))
        (data / "projects" / "acme" / "uploads" / "link.ifc").symlink_to(data / BETA_FILE)
        yield client


def _merge(step_id: str, files: list[str], output: str, input_file: str = "house.ifc") -> dict[str, Any]:
    return {"id": step_id, "operation": "ifcpatch", "arguments": {
        "input_file": input_file, "output_file": output, "recipe": MERGE, "arguments": [files]}}


async def _ended(client: httpx.AsyncClient, workflow_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        wf = (await client.get(f"/workflows/{workflow_id}")).json()
        if wf["terminal"]:
            return dict(wf)
        await asyncio.sleep(0.2)
    raise AssertionError(f"workflow {workflow_id} did not end: {wf}")


def _walls(path: Path) -> set[str]:
    return {w.Name for w in ifcopenshell.open(str(path)).by_type("IfcWall")}


def _stored_arguments(sync_redis: redis.Redis, job_id: str) -> Any:
    return json.loads(cast(bytes, sync_redis.hget(keys.job_meta(job_id), "args")))["arguments"]


async def test_a_workflow_patch_step_merges_the_projects_own_files_named_relative_to_it(
    acme: httpx.AsyncClient, data: Path, sync_redis: redis.Redis
) -> None:
    # "merge" names its file at once (checked at submit), "again" an earlier result (checked when it starts).
    steps = [_merge("merge", ["extra.ifc"], "merged.ifc"),
             _merge("again", ["${merge.output_files.0}"], "again.ifc", input_file="extra.ifc")]
    r = await acme.post("/workflows", json={"steps": steps})
    assert r.status_code == 202, r.text
    wf = await _ended(acme, r.json()["workflow_id"])
    assert wf["status"] == "complete", wf
    out = data / "projects" / "acme" / "output" / "ifcpatch"
    assert _walls(out / "merged.ifc") == {"A", "B", "C", "D", "E", "F"}, "acme's extra.ifc, not default's"
    assert _walls(out / "again.ifc") == {"A", "B", "C", "D", "E", "F"}
    merge, again = wf["steps"]
    # The jobs hold the store keys the service opened; acme is shown them relative to acme.
    assert _stored_arguments(sync_redis, merge["job_id"]) == [["projects/acme/uploads/extra.ifc"]]
    assert _stored_arguments(sync_redis, again["job_id"]) == [["projects/acme/output/ifcpatch/merged.ifc"]]
    assert again["result"]["arguments_used"] == [["output/ifcpatch/merged.ifc"]]
    assert "projects/" not in str(wf)


async def test_a_workflow_patch_step_naming_another_projects_file_is_refused_and_nothing_is_queued(
    acme: httpx.AsyncClient, sync_redis: redis.Redis
) -> None:
    before = sync_redis.zcard(keys.RECENT_JOBS)
    for form in [*BETA_FORMS, "no_such.ifc"]:
        steps = [_merge("fine", ["extra.ifc"], "fine.ifc"), _merge("steal", ["extra.ifc", form], "stolen.ifc")]
        r = await acme.post("/workflows", json={"steps": steps})
        assert r.status_code == 422, (form, r.text)
        [error] = r.json()["detail"]
        assert error["loc"] == ["body", "steps", "steal", "arguments", "arguments", 0], (form, error)
        assert "'steal'" in error["msg"] and "not found" in error["msg"] and repr(form) in error["msg"], error
        assert SECRET_WALL not in r.text
    assert sync_redis.zcard(keys.RECENT_JOBS) == before, "a refused workflow makes no job"
    assert not list(sync_redis.scan_iter(keys.JOB_META + "*"))
    assert not sync_redis.smembers(keys.ACTIVE_WORKFLOWS)


async def test_a_patch_step_whose_argument_resolves_to_another_projects_file_fails_when_it_starts(
    acme: httpx.AsyncClient, data: Path
) -> None:
    # Beta's path only appears once the first step's result is known: "secret.ifc" is its output's name.
    extract = {"id": "extract", "operation": "ifcpatch", "arguments": {
        "input_file": "house.ifc", "output_file": "secret.ifc", "recipe": "ExtractElements", "arguments": ["IfcWall"]}}
    for prefix in ("projects/beta/uploads/", "../beta/uploads/"):
        steps = [extract, _merge("steal", [f"{prefix}${{extract.output_filename}}"], "stolen.ifc")]
        r = await acme.post("/workflows", json={"steps": steps})
        assert r.status_code == 202, r.text
        wf = await _ended(acme, r.json()["workflow_id"])
        assert wf["status"] == "failed", wf
        first, steal = wf["steps"]
        assert (first["status"], steal["status"], steal["job_id"]) == ("complete", "failed", None), wf
        assert "arguments.0" in steal["error"]["message"] and "not found" in steal["error"]["message"], steal
        assert (await acme.get(f"/jobs/wf-{wf['workflow_id']}-steal")).status_code == 404, "no job was made"
    assert not (data / "projects" / "acme" / "output" / "ifcpatch" / "stolen.ifc").exists()


async def test_a_projects_patch_schedule_naming_another_projects_file_fails_to_fire(
    acme: httpx.AsyncClient, sync_redis: redis.Redis
) -> None:
    job = {"operation": "ifcpatch", "arguments": _merge("x", [BETA_FILE], "nightly.ifc")["arguments"]}
    r = await acme.post("/schedules", json={"name": "steal nightly", "cron": "* * * * * *", "job": job})
    assert r.status_code == 201, r.text
    schedule_id = r.json()["id"]
    deadline = time.monotonic() + 30  # the worker fires due schedules every 5 s
    while (fired := (await acme.get(f"/schedules/{schedule_id}")).json())["last_fired"] is None:
        assert time.monotonic() < deadline, fired
        await asyncio.sleep(0.5)
    assert (await acme.delete(f"/schedules/{schedule_id}")).status_code == 204
    assert "arguments.0" in fired["last_error"] and "not found" in fired["last_error"], fired
    assert not list(sync_redis.scan_iter(keys.JOB_META + "*")), "a slot that failed to fire makes no job"


async def test_the_service_opens_no_other_projects_file_for_a_projects_job_recorded_unchecked(
    acme: httpx.AsyncClient, redis_url: str, aredis: ArqRedis, data: Path
) -> None:
    """A job of acme's whose arguments never went through the gateway's check (recorded some other way):
    the service looks for its files in acme's folder alone, so beta's file is missing and a path relative
    to acme is acme's file, not the data directory's."""
    settings = Settings(redis_url=redis_url, data_dir=data)
    for files, expected in (([BETA_FILE], None), (["uploads/extra.ifc"], {"A", "B", "C", "D", "E", "F"})):
        job_id = f"unchecked-{uuid.uuid4().hex[:8]}"
        request = {"input_file": "projects/acme/uploads/house.ifc", "recipe": MERGE, "arguments": [files],
                   "output_file": f"projects/acme/output/ifcpatch/{job_id}.ifc"}
        assert await job_store.create(aredis, settings, NewJob(Operation.ifcpatch, request, job_id, project="acme"))
        view = await until(acme, job_id, timeout=120)
        if expected is None:
            assert view["status"] == "failed" and "not found" in view["error"]["message"], view
            assert SECRET_WALL not in str(view)
        else:
            assert view["status"] == "complete", view
            assert _walls(data / "projects" / "acme" / "output" / "ifcpatch" / f"{job_id}.ifc") == expected
