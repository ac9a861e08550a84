"""Roles (read < submit < admin) on the routes, paths shown relative to the project, quotas wired into
the routes, and an audit line for every state-changing action (issue 22)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.routing import APIRoute

from store import keys
from tests.conftest import Gateway, start_gateway, wait_for
from tests.test_hostile_input import PUBLIC_ROUTES, flat_routes

KEY_A = "roles-a-submit-key-0001"
KEY_A_READ = "roles-a-read-key-0001"
KEY_B = "roles-b-submit-key-0001"
KEY_ADMIN = "roles-admin-key-0001"
LATER = 3600
MODEL = b"ISO-10303-21;\nHEADER;\nENDSEC;\nDATA;\nENDSEC;\nEND-ISO-10303-21;\n"
# POSTs that change nothing: they stay open to read keys.
READ_POSTS = {"/patch/recipes/list"}
ADMIN_PREFIX = "/keys"


def _keys_env(env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**env, "IFCFLOW_API_KEYS": f"a:submit:{KEY_A},a:read:{KEY_A_READ},b:submit:{KEY_B},{KEY_ADMIN}", **extra}


def _dependency_calls(dependant: Any) -> set[str]:
    names = set()
    for sub in dependant.dependencies:
        names.add(getattr(sub.call, "__name__", ""))
        names |= _dependency_calls(sub)
    return names


def test_every_state_changing_route_needs_a_submit_key_and_every_read_route_a_read_key():
    from service.app import create_app

    checked = 0
    for path, route in flat_routes(create_app().routes):
        if not isinstance(route, APIRoute) or path in PUBLIC_ROUTES:
            continue
        calls = _dependency_calls(route.dependant)
        methods = route.methods - {"HEAD"}
        if path.startswith(ADMIN_PREFIX):
            wanted = "require_admin_key"
        elif methods == {"GET"} or (path in READ_POSTS and route.include_in_schema):
            # (the operation's own submit route at such a path is shadowed, never reached: a submit)
            wanted = "require_read_key"
        else:
            wanted = "require_submit_key"
        assert wanted in calls, (sorted(methods), path, calls)
        if wanted == "require_read_key":  # a read route asks for no more than a read key
            assert not calls & {"require_submit_key", "require_admin_key"}, (path, calls)
        checked += 1
    assert checked >= 40


@pytest.fixture
async def own_gateway(env: dict[str, str], tmp_path: Path) -> AsyncIterator[Gateway]:
    """A gateway of this test's own with the projects' keys (its log is read for the audit lines)."""
    gateway = start_gateway(_keys_env(env), tmp_path / "gateway.log")
    yield gateway
    gateway.process.stop()


def _client(gateway: Gateway, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=gateway.url, headers={"X-API-Key": key}, timeout=30)


def _upload(name: str, data: bytes = MODEL) -> dict[str, Any]:
    return {"files": {"file": (name, data, "application/octet-stream")}}


async def test_a_read_key_reads_its_project_and_is_refused_every_change_with_403(own_gateway: Gateway):
    async with _client(own_gateway, KEY_A) as a, _client(own_gateway, KEY_A_READ) as reader:
        assert (await a.post("/upload/ifc", **_upload("m.ifc"))).status_code == 201
        job = (await a.post("/ifcconvert", json={"input_filename": "m.ifc", "output_filename": "m.glb",
                                                 "defer_by": LATER})).json()["job_id"]
        assert (await reader.get(f"/jobs/{job}")).status_code == 200
        assert [f["path"] for f in (await reader.get("/files")).json()] == ["uploads/m.ifc"]
        assert (await reader.get("/files/uploads/m.ifc")).content == MODEL
        for method, url, body in (("DELETE", f"/jobs/{job}", None), ("POST", f"/jobs/{job}/requeue", None),
                                  ("POST", "/ifcconvert", {"input_filename": "m.ifc", "output_filename": "x.glb"}),
                                  ("POST", "/uploads/presign", {"filename": "x.ifc", "file_type": "ifc"}),
                                  ("POST", "/create_download_link", {"file_path": "/uploads/m.ifc"})):
            r = await reader.request(method, url, json=body)
            assert r.status_code == 403, (method, url, r.text)
            assert r.json()["detail"] == "this key's role may not do this: it needs the submit role"
        assert (await reader.post("/upload/ifc", **_upload("m.ifc", b"changed"))).status_code == 403
        assert (await reader.get(f"/jobs/{job}")).json()["status"] == "deferred"
        assert (await reader.get("/keys")).status_code == 403
        assert (await a.get("/keys")).status_code == 403


async def test_jobs_are_shown_with_paths_relative_to_the_project_and_listed_per_project(own_gateway: Gateway):
    async with _client(own_gateway, KEY_A) as a, _client(own_gateway, KEY_B) as b, \
            _client(own_gateway, KEY_ADMIN) as admin:
        for client in (a, b):
            r = await client.post("/upload/ifc", **_upload("m.ifc"))
            assert r.json()["path"] == "uploads/m.ifc" and r.json()["file_path"] == "/uploads/m.ifc"
        body = {"input_filename": "m.ifc", "output_filename": "m.glb", "defer_by": LATER}
        job_a = (await a.post("/ifcconvert", json=body)).json()["job_id"]
        job_b = (await b.post("/ifcconvert", json=body)).json()["job_id"]
        seen = (await b.get(f"/jobs/{job_b}")).json()
        assert seen["project"] == "b" and seen["arguments"]["input_filename"] == "uploads/m.ifc"
        assert seen["arguments"]["output_filename"] == "output/ifcconvert/m.glb"
        whole = (await admin.get(f"/jobs/{job_b}")).json()  # the admin of default names store keys
        assert whole["arguments"]["input_filename"] == "projects/b/uploads/m.ifc"
        listed = (await a.get("/jobs")).json()
        assert [j["job_id"] for j in listed["jobs"]] == [job_a] and listed["indexed"] is None
        assert (await a.get("/jobs", params={"project": "b"})).json()["jobs"] == []
        assert {j["job_id"] for j in (await admin.get("/jobs")).json()["jobs"]} == {job_a, job_b}
        only_b = (await admin.get("/jobs", params={"project": "b"})).json()["jobs"]
        assert [j["job_id"] for j in only_b] == [job_b]
        assert (await admin.get("/jobs", params={"project": "Not A Name"})).status_code == 422
        overview = (await a.get("/dashboard-api/overview")).json()
        assert overview["caller"] == {"project": "a", "role": "submit"}
        assert sum(q["deferred"] for q in overview["queues"].values()) == 1
        assert all(q["history"] == [] for q in overview["queues"].values())
        assert sum(q["deferred"] for q in (await admin.get("/dashboard-api/overview")).json()["queues"].values()) == 2


async def test_quotas_are_checked_by_the_routes(env: dict[str, str], tmp_path: Path):
    quotas = {"a": {"queued": 1, "storage_bytes": 1000, "rps": 3}}
    gateway = start_gateway(_keys_env(env, IFCFLOW_PROJECT_QUOTAS=orjson.dumps(quotas).decode()),
                            tmp_path / "gateway.log")
    try:
        async with _client(gateway, KEY_A) as a, _client(gateway, KEY_B) as b:
            body = {"input_filename": "m.ifc", "output_filename": "m.glb", "defer_by": LATER}
            # More requests than 3 a second can let through in the (at most two) seconds they take.
            answers = await asyncio.gather(*(a.get("/files") for _ in range(12)))
            limited = [r for r in answers if r.status_code == 429]
            assert limited and limited[0].headers["Retry-After"] == "1", [r.status_code for r in answers]
            assert "requests per second" in limited[0].json()["detail"]
            assert all(r.status_code == 200 for r in await asyncio.gather(*(b.get("/files") for _ in range(12))))

            async def calm(method: str, url: str, **kw: Any) -> httpx.Response:
                """The request once the second's rate allows it (the limit is not what this part tests)."""
                while True:
                    r = await a.request(method, url, **kw)
                    if r.status_code != 429 or "requests per second" not in r.text:
                        return r
                    await asyncio.sleep(0.2)

            assert (await calm("POST", "/upload/ifc", **_upload("m.ifc"))).status_code == 201
            big = await calm("POST", "/upload/ifc", **_upload("big.ifc", b"x" * 2000))
            assert big.status_code == 507 and "storage quota" in big.json()["detail"], big.text
            presign = await calm("POST", "/uploads/presign", json={"filename": "p.ifc", "file_type": "ifc",
                                                                   "size": 1500})
            assert presign.status_code == 507, presign.text
            assert (await calm("POST", "/ifcconvert", json=body)).status_code == 202
            second = await calm("POST", "/ifcconvert", json=body)
            assert second.status_code == 429 and "waiting jobs" in second.json()["detail"], second.text
            assert second.headers["Retry-After"] == "5"
            workflow = await calm("POST", "/workflows", json={"defer_by": LATER, "steps": [
                {"id": "c", "operation": "ifcconvert", "arguments": {"input_filename": "m.ifc",
                                                                     "output_filename": "w.glb"}}]})
            assert workflow.status_code == 429, workflow.text
            assert (await b.post("/upload/ifc", **_upload("m.ifc"))).status_code == 201
            assert (await b.post("/ifcconvert", json=body)).status_code == 202  # B has no such limit
    finally:
        gateway.process.stop()


def _audit_lines(gateway: Gateway) -> list[dict[str, Any]]:
    return [line for line in gateway.process.log_lines() if line.get("logger") == "audit"]


async def test_every_state_changing_action_writes_an_audit_line_naming_who_and_what(
    own_gateway: Gateway, sync_redis
):
    now = str(int(time.time() * 1000))
    failed = "a-failed-job-0001"
    sync_redis.hset(keys.job_meta(failed), mapping={
        "status": "failed", "operation": "ifcconvert", "project": "a", "queue": "arq:queue", "enqueued_at": now,
        "args": orjson.dumps({"input_filename": "projects/a/uploads/m.ifc", "output_filename": "x"}).decode()})
    async with _client(own_gateway, KEY_A) as a, _client(own_gateway, KEY_ADMIN) as admin:
        assert (await a.post("/upload/ifc", **_upload("m.ifc"))).status_code == 201
        job = (await a.post("/ifcconvert", json={"input_filename": "m.ifc", "output_filename": "m.glb",
                                                 "defer_by": LATER})).json()["job_id"]
        assert (await a.delete(f"/jobs/{job}")).status_code == 202
        assert (await a.post(f"/jobs/{failed}/requeue")).status_code == 202
        grant = (await a.post("/uploads/presign", json={"filename": "big.ifc", "file_type": "ifc"})).json()
        assert (await a.put(grant["url"], content=MODEL)).status_code == 200
        assert (await a.post("/uploads/confirm", json={"upload_id": grant["upload_id"]})).status_code == 201
        assert (await a.post("/create_download_link", json={"file_path": "/uploads/m.ifc"})).status_code == 200
        workflow = (await a.post("/workflows", json={"defer_by": LATER, "steps": [
            {"id": "c", "operation": "ifcconvert", "arguments": {"input_filename": "m.ifc",
                                                                 "output_filename": "w.glb"}}]})).json()["workflow_id"]
        assert (await a.delete(f"/workflows/{workflow}")).status_code == 202
        schedule = (await a.post("/schedules", json={"name": "n", "cron": "0 2 * * *", "job": {
            "operation": "ifcconvert", "arguments": {"input_filename": "m.ifc", "output_filename": "n.glb"}}})).json()
        for step in ("pause", "resume"):
            assert (await a.post(f"/schedules/{schedule['id']}/{step}")).status_code == 200
        assert (await a.delete(f"/schedules/{schedule['id']}")).status_code == 204
        made = (await admin.post("/keys", json={"project": "a", "role": "read"})).json()
        assert (await admin.delete(f"/keys/{made['key_id']}")).status_code == 204
        # Refused and read-only calls leave no audit line.
        async with _client(own_gateway, KEY_A_READ) as reader:
            assert (await reader.delete(f"/jobs/{job}")).status_code == 403
        assert (await a.get("/jobs")).status_code == 200

    wanted = {"job.submit": {"job_id": job, "operation": "ifcconvert"}, "job.cancel": {"job_id": job},
              "job.requeue": {"job_id": failed}, "file.upload": {"path": "uploads/m.ifc"},
              "upload.presign": {"path": "uploads/big.ifc"}, "upload.confirm": {"path": "uploads/big.ifc"},
              "link.create": {"path": "uploads/m.ifc"}, "workflow.submit": {"workflow_id": workflow},
              "workflow.cancel": {"workflow_id": workflow}, "schedule.create": {"schedule_id": schedule["id"]},
              "schedule.pause": {"schedule_id": schedule["id"]}, "schedule.resume": {"schedule_id": schedule["id"]},
              "schedule.delete": {"schedule_id": schedule["id"]}, "key.create": {}, "key.revoke": {}}

    def all_there() -> list[dict[str, Any]] | None:
        lines = _audit_lines(own_gateway)
        return lines if {line["action"] for line in lines} >= set(wanted) else None

    lines = wait_for(all_there, timeout=10, what="the audit lines")
    by_action = {line["action"]: line for line in lines}
    for action, target in wanted.items():
        line = by_action[action]
        assert line["event"] == "audit" and line["key_id"].startswith("key_"), line
        assert {k: line.get(k) for k in target} == target, (action, line)
        if not action.startswith("key."):
            assert line["project"] == "a" and line["role"] == "submit", line
    # One line per action: the refused cancel and the listing wrote none.
    assert sum(1 for line in lines if line["action"] == "job.cancel") == 1
    assert len(lines) == len(wanted), [line["action"] for line in lines]
    log = own_gateway.process.log_path.read_text()
    for key in (KEY_A, KEY_A_READ, KEY_ADMIN, made["key"]):
        assert key not in log
