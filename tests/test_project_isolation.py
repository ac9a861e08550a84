"""Projects are isolated on every route (issue 22): a ``submit`` key of project A can neither read nor
change anything of project B, and a ``read`` key of A changes nothing.

Project B makes one of everything (an uploaded model, a deferred job, a failed and a finished job, a
workflow, a schedule, a download link, a presigned upload, an output file); then every route of
``service.app`` is called with A's keys, B's ids and paths put into its parameters. ``ROUTES`` says
what each route is expected to do, and must cover the app's routes: a new route fails this test until
it is given a decision here. A probe naming B's thing must get exactly the answer the same probe gets
for a thing that does not exist (no existence leak); nothing A gets holds B's bytes, and afterwards B
finds all its things as they were.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
import websockets
from fastapi.routing import APIRoute, APIWebSocketRoute

from contracts.operations import OPERATIONS
from service.routers.viewer import VENDOR
from store import keys
from tests.test_hostile_input import flat_routes

KEY_A = "project-a-submit-key-0001"
KEY_A_READ = "project-a-read-key-0001"
KEY_B = "project-b-submit-key-0001"
KEY_ADMIN = "admin-key-of-default-0001"
SECRET = f"B-SECRET-{uuid.uuid4().hex}"
B_MODEL = f"ISO-10303-21;\nHEADER;\nENDSEC;\nDATA;\n/* {SECRET} */\nENDSEC;\nEND-ISO-10303-21;\n".encode()
A_MODEL = b"ISO-10303-21;\nHEADER;\nENDSEC;\nDATA;\n/* project a */\nENDSEC;\nEND-ISO-10303-21;\n"
LATER = 3600  # defer_by of every job made here: no worker runs, and nothing is due during the test


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    """Two projects' keys and an admin's (bare: default's admin): the gateway is this test's own."""
    return {**env, "IFCFLOW_API_KEYS": f"a:submit:{KEY_A},a:read:{KEY_A_READ},b:submit:{KEY_B},{KEY_ADMIN}"}


def _hex() -> str:
    return uuid.uuid4().hex


@dataclass
class Things:
    """B's things (``b``) and things of the same shape that do not exist (``none``), by name."""

    b: dict[str, str] = field(default_factory=dict)
    none: dict[str, str] = field(default_factory=dict)

    def ids(self) -> list[str]:
        """What of B must never appear in a listing A gets."""
        return [v for k, v in self.b.items() if k in ("job", "failed_job", "clash_job", "workflow", "schedule",
                                                      "token", "upload_id")]


@dataclass
class Clients:
    a: httpx.AsyncClient
    a_read: httpx.AsyncClient
    b: httpx.AsyncClient
    admin: httpx.AsyncClient
    url: str


@pytest.fixture
async def clients(gateway: str) -> AsyncIterator[Clients]:
    made = [httpx.AsyncClient(base_url=gateway, headers={"X-API-Key": key}, timeout=30)
            for key in (KEY_A, KEY_A_READ, KEY_B, KEY_ADMIN)]
    yield Clients(*made, url=gateway)
    for c in made:
        await c.aclose()


def _upload(name: str, data: bytes) -> dict[str, Any]:
    return {"files": {"file": (name, data, "application/octet-stream")}}


async def _b_makes_everything(c: Clients, sync_redis: Any, data_dir: Any) -> Things:
    t = Things()
    r = await c.b.post("/upload/ifc", **_upload("model.ifc", B_MODEL))
    assert r.status_code == 201 and r.json()["path"] == "uploads/model.ifc", r.text
    assert (data_dir / "projects" / "b" / "uploads" / "model.ifc").read_bytes() == B_MODEL
    r = await c.a.post("/upload/ifc", **_upload("a.ifc", A_MODEL))
    assert r.status_code == 201, r.text
    r = await c.b.post("/ifcconvert", json={"input_filename": "model.ifc", "output_filename": "m.glb",
                                            "defer_by": LATER})
    assert r.status_code == 202 and r.json()["status"] == "deferred", r.text
    t.b["job"] = r.json()["job_id"]
    step = {"id": "c", "operation": "ifcconvert",
            "arguments": {"input_filename": "model.ifc", "output_filename": "w.glb"}}
    r = await c.b.post("/workflows", json={"defer_by": LATER, "steps": [step]})
    assert r.status_code == 202, r.text
    t.b["workflow"] = r.json()["workflow_id"]
    r = await c.b.post("/schedules", json={"name": "b nightly", "cron": "0 2 * * *", "job": {
        "operation": "ifcconvert", "arguments": {"input_filename": "model.ifc", "output_filename": "n.glb"}}})
    assert r.status_code == 201 and r.json()["project"] == "b", r.text
    t.b["schedule"] = r.json()["id"]
    r = await c.b.post("/create_download_link", json={"file_path": "/uploads/model.ifc"})
    assert r.status_code == 200 and r.json()["file_path"] == "/uploads/model.ifc", r.text
    t.b["token"] = r.json()["download_token"]
    r = await c.b.post("/uploads/presign", json={"filename": "big.ifc", "file_type": "ifc", "size": 10})
    assert r.status_code == 201, r.text
    t.b["upload_id"] = r.json()["upload_id"]
    # An output of B's (as a worker writes one: straight into the store) and two ended jobs of B's,
    # recorded as the worker records them: a finished clash (a "previous" for A's clash) and a failure.
    out = data_dir / "projects" / "b" / "output"
    (out / "json").mkdir(parents=True)
    (out / "json" / "m.json").write_text(f'{{"secret": "{SECRET}"}}')
    (out / "ifcclash").mkdir(parents=True)
    (out / "ifcclash" / "c.json").write_text(f'{{"clashes": [], "secret": "{SECRET}"}}')
    now = str(int(time.time() * 1000))
    for name, status, operation, extra in (
        ("clash_job", "complete", "ifcclash", {"result": orjson.dumps(
            {"output_files": ["projects/b/output/ifcclash/c.json"]}).decode()}),
        ("failed_job", "failed", "ifcconvert", {"error": orjson.dumps({"type": "x", "message": "failed"}).decode()}),
    ):
        job_id = f"b-{name}-{_hex()[:8]}"
        args = {"input_filename": "projects/b/uploads/model.ifc", "output_filename": "projects/b/output/x"}
        sync_redis.hset(keys.job_meta(job_id), mapping={
            "status": status, "operation": operation, "project": "b", "queue": "arq:queue", "enqueued_at": now,
            "finished_at": now, "args": orjson.dumps(args).decode(), **extra})
        sync_redis.zadd(keys.RECENT_JOBS, {job_id: int(now)})
        t.b[name] = job_id
    t.b.update(file="uploads/model.ifc", full="projects/b/uploads/model.ifc", output="projects/b/output/json/m.json")
    t.none.update(job=f"{_hex()}", failed_job=f"b-failed_job-{_hex()[:8]}", clash_job=f"b-clash_job-{_hex()[:8]}",
                  workflow=_hex(), schedule=_hex(), token="x" * len(t.b["token"]),
                  upload_id=secrets.token_urlsafe(32), file="uploads/nothing.ifc",
                  full="projects/b/uploads/nothing.ifc", output="projects/b/output/json/nothing.json")
    return t


# --------------------------------------------------------------------------------------------------
# What each route is expected to do. A probe is (method, url, keyword arguments of httpx) made from a
# Things side (B's or the nonexistent one); ``same`` probes must get the same answer for both.

Probe = Callable[[dict[str, str]], tuple[str, str, dict[str, Any]]]


@dataclass
class Case:
    kind: str  # public | credential | read | list | change | create | admin | socket | feed
    probes: list[Probe] = field(default_factory=list)
    # create: extra statuses A's submit key may get for its own probes (its own things)
    allowed: frozenset[int] = frozenset()


def get(url: str, **kw: Any) -> Probe:
    return lambda t: ("GET", url.format(**t), {k: _fmt(v, t) for k, v in kw.items()})


def post(url: str, body: Any = None, **kw: Any) -> Probe:
    return lambda t: ("POST", url.format(**t), {"json": _fmt(body, t), **kw} if body is not None else dict(kw))


def delete(url: str) -> Probe:
    return lambda t: ("DELETE", url.format(**t), {})


def put(url: str) -> Probe:
    return lambda t: ("PUT", url.format(**t), {"content": b"x"})


def _fmt(value: Any, t: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**t)
    if isinstance(value, dict):
        return {k: _fmt(v, t) for k, v in value.items()}
    if isinstance(value, list):
        return [_fmt(v, t) for v in value]
    return value


FILE_FORMS = ["{full}", "/{full}", "{file}", "/{file}", "../{full}"]
CONVERT_B = {"input_filename": "{full}", "output_filename": "x.glb", "defer_by": LATER}
OPERATION_ROUTES = {spec.path for spec in OPERATIONS.values()}

ROUTES: dict[tuple[str, str], Case] = {
    # No key needed: the API's description, liveness, and the packaged pages and assets.
    ("GET", "/openapi.json"): Case("public", [get("/openapi.json")]),
    ("GET", "/health"): Case("public", [get("/health")]),
    ("GET", "/docs"): Case("public", [get("/docs")]),
    ("GET", "/docs/oauth2-redirect"): Case("public", [get("/docs/oauth2-redirect")]),
    ("GET", "/redoc"): Case("public", [get("/redoc")]),
    ("GET", "/dashboard"): Case("public", [get("/dashboard")]),
    ("GET", "/dashboard/{asset}"): Case("public", [get("/dashboard/app.js")]),
    ("GET", "/favicon.ico"): Case("public", [get("/favicon.ico")]),
    ("GET", "/viewer"): Case("public", [get("/viewer")]),
    ("GET", "/viewer/{asset}"): Case("public", [get("/viewer/main.js")]),
    ("GET", "/vendor/{path:path}"): Case("public", [get("/vendor/{vendor}")]),
    # Their own credential (a signed link, a one-time upload id): A holds neither of B's.
    ("GET", "/download/{token}"): Case("credential", [get("/download/{token}")]),
    ("PUT", "/uploads/presigned/{upload_id}"): Case("credential", [put("/uploads/presigned/{upload_id}")]),
    # Reading one of B's things: the answer of a thing that does not exist.
    ("GET", "/jobs/{job_id}"): Case("read", [get("/jobs/{job}"), get("/jobs/{failed_job}"), get("/jobs/{clash_job}")]),
    ("GET", "/jobs/{job_id}/status"): Case("read", [get("/jobs/{job}/status"), get("/jobs/{clash_job}/status")]),
    ("GET", "/jobs/{job_id}/events"): Case("read", [get("/jobs/{job}/events")]),
    ("GET", "/workflows/{workflow_id}"): Case("read", [get("/workflows/{workflow}")]),
    ("GET", "/schedules/{schedule_id}"): Case("read", [get("/schedules/{schedule}")]),
    ("GET", "/files/{path:path}"): Case("read", [get(f"/files/{f}") for f in FILE_FORMS[:1] + FILE_FORMS[2:3]]
                                        + [get("/files/{output}")]),
    ("GET", "/ifc2json/{filename:path}"): Case("read", [get("/ifc2json/{output}"), get("/ifc2json/m.json")]),
    ("GET", "/viewer-api/file"): Case("read", [get("/viewer-api/file", params={"file": f}) for f in FILE_FORMS]),
    ("GET", "/viewer-api/elements"): Case("read", [get("/viewer-api/elements", params={"file": f})
                                                   for f in FILE_FORMS[:3]]),
    ("GET", "/viewer-api/properties"): Case("read", [get("/viewer-api/properties", params={
        "file": "{full}", "global_id": "0" * 22})]),
    # Listings: A's own things only.
    ("GET", "/jobs"): Case("list", [get("/jobs"), get("/jobs", params={"project": "b"})]),
    ("GET", "/files"): Case("list", [get("/files", params={"versions": "true"}),
                                     get("/files", params={"prefix": "projects/"})]),
    ("GET", "/list_directories"): Case("list", [get("/list_directories")]),
    ("GET", "/schedules"): Case("list", [get("/schedules"), get("/schedules", params={"project": "b"})]),
    ("GET", "/dashboard-api/overview"): Case("list", [get("/dashboard-api/overview")]),
    ("GET", "/metrics"): Case("list", [get("/metrics")]),
    ("POST", "/patch/recipes/list"): Case("list", [post("/patch/recipes/list", {})]),  # a read, sent as POST
    # Changing one of B's things: the answer of a thing that does not exist, B's thing unchanged.
    ("DELETE", "/jobs/{job_id}"): Case("change", [delete("/jobs/{job}")]),
    ("POST", "/jobs/{job_id}/requeue"): Case("change", [post("/jobs/{failed_job}/requeue")]),
    ("DELETE", "/workflows/{workflow_id}"): Case("change", [delete("/workflows/{workflow}")]),
    ("POST", "/schedules/{schedule_id}/pause"): Case("change", [post("/schedules/{schedule}/pause")]),
    ("POST", "/schedules/{schedule_id}/resume"): Case("change", [post("/schedules/{schedule}/resume")]),
    ("DELETE", "/schedules/{schedule_id}"): Case("change", [delete("/schedules/{schedule}")]),
    ("POST", "/uploads/confirm"): Case("change", [post("/uploads/confirm", {"upload_id": "{upload_id}"})]),
    ("POST", "/create_download_link"): Case("change", [post("/create_download_link", {"file_path": f})
                                                       for f in FILE_FORMS[:4]]),
    # Making something: A's own, never reaching B's files (a path of B's is as missing as no file).
    ("POST", "/ifcconvert"): Case("create", [post("/ifcconvert", {**CONVERT_B, "input_filename": f})
                                             for f in FILE_FORMS]),
    ("POST", "/ifcclash"): Case("create", [post("/ifcclash", {
        "clash_sets": [{"name": "s", "a": [{"file": "a.ifc"}]}], "output_filename": "c.json", "previous": p,
        "defer_by": LATER}) for p in ("{clash_job}", "{full}")]),
    ("POST", "/ifc2json"): Case("create", [post("/ifc2json", {"filename": f, "output_filename": "x.json",
                                                              "defer_by": LATER}) for f in FILE_FORMS[:3]]),
    ("POST", "/patch/execute"): Case("create", [post("/patch/execute", {
        "input_file": "{full}", "output_file": "o.ifc", "recipe": "ExtractElements", "arguments": [".IfcWall"],
        "defer_by": LATER})], allowed=frozenset({503})),
    ("POST", "/download-from-url"): Case("create", [post("/download-from-url", {
        "url": "https://example.invalid/x.ifc", "defer_by": LATER})]),
    ("POST", "/workflows"): Case("create", [post("/workflows", {"defer_by": LATER, "steps": [
        {"id": "c", "operation": "ifcconvert", "arguments": {"input_filename": f, "output_filename": "w.glb"}}]})
        for f in FILE_FORMS[:3]]),
    ("POST", "/schedules"): Case("create", [post("/schedules", {"name": "a", "cron": "0 3 * * *", "paused": True,
                                                               "job": {"operation": "ifcconvert", "arguments": {
                                                                   "input_filename": "{full}",
                                                                   "output_filename": "s.glb"}}})],
                                 allowed=frozenset({201})),
    ("POST", "/uploads/presign"): Case("create", [post("/uploads/presign", {"filename": "model.ifc",
                                                                           "file_type": "ifc"})],
                                       allowed=frozenset({201})),
    # Last of all: A uploads a model of B's name, into A's own folder.
    ("POST", "/upload/{file_type}"): Case("create", [lambda t: ("POST", "/upload/ifc", _upload("model.ifc", A_MODEL))],
                                          allowed=frozenset({201})),
    # Keys: admin only.
    ("POST", "/keys"): Case("admin", [post("/keys", {"project": "b", "role": "admin"})]),
    ("GET", "/keys"): Case("admin", [get("/keys"), get("/keys", params={"project": "b"})]),
    ("DELETE", "/keys/{key_id}"): Case("admin", [delete("/keys/key_0123456789ab")]),
    # Sockets.
    ("WS", "/jobs/{job_id}/ws"): Case("socket", [get("/jobs/{job}/ws")]),
    ("WS", "/workflows/{workflow_id}/ws"): Case("socket", [get("/workflows/{workflow}/ws")]),
    ("WS", "/ws/jobs"): Case("feed"),
}
# Every operation has its submit route; those not given probes above are still the submit route
# (service/routers/operations.py), and are checked with an empty body: a read key's 403 first.
for _path in OPERATION_ROUTES:
    ROUTES.setdefault(("POST", _path), Case("create", [post(_path, {})]))

ORDER = ["public", "credential", "read", "list", "socket", "feed", "change", "create", "admin"]
STATE_CHANGING = {"change", "create", "admin"}


def app_routes() -> set[tuple[str, str]]:
    from service.app import create_app

    found = set()
    for path, route in flat_routes(create_app().routes):
        if isinstance(route, APIWebSocketRoute):
            found.add(("WS", path))
        elif isinstance(route, APIRoute) or getattr(route, "methods", None):
            found.update((m, path) for m in route.methods - {"HEAD"})
    return found


def test_every_route_has_an_isolation_decision():
    routes = app_routes()
    assert routes - set(ROUTES) == set(), "routes without a decision in ROUTES: add one"
    assert set(ROUTES) - routes == set(), "ROUTES names routes the app does not have"
    assert {case.kind for case in ROUTES.values()} <= set(ORDER)


# --------------------------------------------------------------------------------------------------


def _normal(text: str, t: dict[str, str]) -> str:
    """The answer with the probe's things put back to their names, to compare B's with the nonexistent."""
    for name, value in sorted(t.items(), key=lambda kv: -len(kv[1])):
        text = text.replace(value, f"<{name}>")
    return text.replace("model.ifc", "<name>").replace("nothing.ifc", "<name>").replace(
        "m.json", "<json>").replace("nothing.json", "<json>")


async def _call(client: httpx.AsyncClient, probe: Probe, t: dict[str, str]) -> httpx.Response:
    method, url, kw = probe(t)
    if not url.endswith("/events"):
        return await client.request(method, url, **kw)
    # A stream of Server-Sent Events stays open while the job runs: its first event is the answer.
    async with client.stream(method, url, **kw) as r:
        first = b""
        async for chunk in r.aiter_bytes():
            first += chunk
            if b"\n\n" in first:
                break
        return httpx.Response(r.status_code, headers=r.headers, content=first)


def _no_secret(r: httpx.Response, what: Any) -> None:
    assert SECRET.encode() not in r.content, (what, r.status_code, r.text[:300])


async def _socket_close(url: str, key: str) -> tuple[int, str]:
    async with websockets.connect(url, additional_headers={"X-API-Key": key}, open_timeout=5) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def _b_state(c: Clients, t: Things) -> dict[str, Any]:
    """What B sees of its things: must be the same after A's every call."""
    b = t.b
    job = (await c.b.get(f"/jobs/{b['job']}")).json()
    files = (await c.b.get("/files", params={"versions": "true"})).json()
    return {
        "job": (job["status"], job["arguments"]),
        "failed": (await c.b.get(f"/jobs/{b['failed_job']}")).json()["status"],
        "clash": (await c.b.get(f"/jobs/{b['clash_job']}")).json()["status"],
        "workflow": (await c.b.get(f"/workflows/{b['workflow']}")).json()["status"],
        "schedule": {k: v for k, v in (await c.b.get(f"/schedules/{b['schedule']}")).json().items()
                     if k != "next_run"},
        "files": [(f["path"], f["version"], len(f["versions"])) for f in files],
        "model": (await c.b.get("/files/uploads/model.ifc")).content,
        "link": (await c.b.get(f"/download/{b['token']}")).content,
        "jobs": sorted(j["job_id"] for j in (await c.b.get("/jobs")).json()["jobs"] if j["job_id"] in t.ids()),
    }


async def test_a_submit_key_of_another_project_neither_reads_nor_changes_anything_on_any_route(
    clients: Clients, sync_redis, data_dir
):
    c = clients
    t = await _b_makes_everything(c, sync_redis, data_dir)
    vendor = next(p.relative_to(VENDOR).as_posix() for p in sorted(VENDOR.rglob("*.js")))
    t.b["vendor"] = t.none["vendor"] = vendor
    before = await _b_state(c, t)
    assert before["model"] == B_MODEL and before["link"] == B_MODEL and before["job"][0] == "deferred"
    ws_base = c.url.replace("http", "ws", 1)
    checked: dict[str, int] = {}
    for kind in ORDER:
        for (method, path), case in ROUTES.items():
            if case.kind != kind:
                continue
            checked[kind] = checked.get(kind, 0) + 1
            await _check(kind, method, path, case, c, t, ws_base)
    assert checked.get("read", 0) >= 10 and checked.get("change", 0) >= 8 and checked.get("create", 0) >= 10
    assert await _b_state(c, t) == before, "a call of project A changed something of project B"
    # A's own upload of the same name is A's, beside B's.
    assert (data_dir / "projects" / "a" / "uploads" / "model.ifc").read_bytes() == A_MODEL


async def _check(kind: str, method: str, path: str, case: Case, c: Clients, t: Things, ws_base: str) -> None:
    where = (method, path)
    if kind == "public":
        for probe in case.probes:
            r = await _call(c.a, probe, t.b)
            assert r.status_code < 500, (where, r.status_code)
            _no_secret(r, where)
    elif kind == "credential":  # A's key opens nothing: only the link or upload id itself would
        for probe in case.probes:
            r = await _call(c.a, probe, t.none)
            assert r.status_code in (403, 404), (where, r.status_code, r.text)
            _no_secret(r, where)
    elif kind == "read":
        names_something = False
        for probe in case.probes:
            a = await _same_as_missing(c.a, probe, t, where)
            await _same_as_missing(c.a_read, probe, t, where)
            for owner in (c.b, c.admin):  # B names its files relative to its folder, the admin by store key
                r = await _call(owner, probe, t.b)
                names_something |= (r.status_code, _normal(r.text, t.b)) != (a.status_code, _normal(a.text, t.b))
        assert names_something, ("no probe names a thing of B's that B or the admin finds", where)
    elif kind == "list":
        for probe in case.probes:
            for client in (c.a, c.a_read):
                r = await _call(client, probe, t.b)
                assert r.status_code in (200, 503), (where, r.status_code, r.text[:300])
                _no_secret(r, where)
                for value in [*t.ids(), "projects/b"]:
                    assert value not in r.text, (where, value, r.text[:300])
                assert 'project="b"' not in r.text, where
        if path == "/dashboard-api/overview":  # A has no job: none of B's is counted
            r = await c.a.get(path)
            assert all(q["queued"] == q["deferred"] == 0 for q in r.json()["queues"].values()), r.json()
            admin = (await c.admin.get(path)).json()
            assert sum(q["deferred"] for q in admin["queues"].values()) >= 1, admin
    elif kind == "socket":
        for probe in case.probes:
            _, url_b, _ = probe(t.b)
            _, url_none, _ = probe(t.none)
            for key in (KEY_A, KEY_A_READ):
                seen_b = await _socket_close(ws_base + url_b, key)
                seen_none = await _socket_close(ws_base + url_none, key)
                assert seen_b[0] == seen_none[0] == 4404, (where, seen_b, seen_none)
                assert _normal(seen_b[1], t.b) == _normal(seen_none[1], t.none), (where, seen_b, seen_none)
    elif kind == "feed":
        await _feed_shows_only_the_own_project(c, ws_base)
    elif kind == "change":
        for probe in case.probes:
            r = await _call(c.a_read, probe, t.b)
            assert r.status_code == 403, (where, "read key", r.status_code, r.text)
            await _same_as_missing(c.a, probe, t, where)
    elif kind == "create":
        for probe in case.probes:
            r = await _call(c.a_read, probe, t.b)
            assert r.status_code == 403, (where, "read key", r.status_code, r.text)
            r = await _call(c.a, probe, t.b)
            _no_secret(r, where)
            if r.status_code in case.allowed:  # A's own thing
                made = r.json() if "json" in r.headers.get("content-type", "") else {}
                assert made.get("project", "a") == "a", (where, made)
                continue
            assert 400 <= r.status_code < 500, (where, r.status_code, r.text[:300])
            if r.status_code == 422:  # refused for the path: as a path that names nothing
                missing = await _call(c.a, probe, t.none)
                assert missing.status_code == 422 and _normal(r.text, t.b) == _normal(missing.text, t.none), (
                    where, r.text, missing.text)
    elif kind == "admin":
        for probe in case.probes:
            for client in (c.a, c.a_read):
                r = await _call(client, probe, t.b)
                assert r.status_code == 403, (where, r.status_code, r.text)


async def _same_as_missing(client: httpx.AsyncClient, probe: Probe, t: Things, where: Any) -> httpx.Response:
    r = await _call(client, probe, t.b)
    missing = await _call(client, probe, t.none)
    _no_secret(r, where)
    assert 400 <= r.status_code < 500, (where, probe(t.b)[1], r.status_code, r.text[:300])
    assert r.status_code == missing.status_code, (where, probe(t.b)[1], r.status_code, missing.status_code)
    assert _normal(r.text, t.b) == _normal(missing.text, t.none), (where, r.text, missing.text)
    return r


async def _next_job_event(ws: Any, job_id: str, timeout: float = 10) -> dict[str, Any]:
    """Messages until one about ``job_id``; fails on one about a job of project b."""
    while True:
        message = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
        assert message.get("project") != "b", message
        if message["job_id"] == job_id:
            return dict(message)


async def _feed_shows_only_the_own_project(c: Clients, ws_base: str) -> None:
    """``/ws/jobs``: B's new job reaches the admin's socket and not A's (nor A's read key's); A's does."""
    async with (
        websockets.connect(f"{ws_base}/ws/jobs", additional_headers={"X-API-Key": KEY_A}) as a_ws,
        websockets.connect(f"{ws_base}/ws/jobs", additional_headers={"X-API-Key": KEY_A_READ}) as read_ws,
        websockets.connect(f"{ws_base}/ws/jobs", additional_headers={"X-API-Key": KEY_ADMIN}) as admin_ws,
    ):
        # Subscribed once an event comes through: A's first job is the marker for A's two sockets.
        await _wait_subscribed(c, [a_ws, read_ws, admin_ws])
        r = await c.b.post("/ifcconvert", json={"input_filename": "model.ifc", "output_filename": "f.glb",
                                                "defer_by": LATER})
        b_job = r.json()["job_id"]
        seen = orjson.loads(await asyncio.wait_for(admin_ws.recv(), 10))
        while seen["job_id"] != b_job:
            seen = orjson.loads(await asyncio.wait_for(admin_ws.recv(), 10))
        assert seen["project"] == "b" and seen["arguments"]["input_filename"] == "projects/b/uploads/model.ifc"
        # Made after B's: the same fan-out sends it after B's would have been sent.
        r = await c.a.post("/ifcconvert", json={"input_filename": "a.ifc", "output_filename": "f.glb",
                                                "defer_by": LATER})
        a_job = r.json()["job_id"]
        for ws in (a_ws, read_ws):
            mine = await _next_job_event(ws, a_job)
            assert mine["project"] == "a" and mine["arguments"]["input_filename"] == "uploads/a.ifc", mine
        await c.a.delete(f"/jobs/{a_job}")  # A's, made here; B's stays as it is
        await c.b.delete(f"/jobs/{b_job}")


async def _wait_subscribed(c: Clients, sockets: list[Any]) -> None:
    """Until each socket gets an event: A's deferred job, made (and cancelled) until every socket had one."""
    pending = list(sockets)
    while pending:
        r = await c.a.post("/ifcconvert", json={"input_filename": "a.ifc", "output_filename": "s.glb",
                                                "defer_by": LATER})
        job_id = r.json()["job_id"]
        still = []
        for ws in pending:
            try:
                await _next_job_event(ws, job_id, timeout=2)
            except TimeoutError:
                still.append(ws)
        await c.a.delete(f"/jobs/{job_id}")
        pending = still


async def test_another_projects_job_cannot_be_a_clash_jobs_previous_run(clients: Clients, sync_redis, data_dir):
    t = await _b_makes_everything(clients, sync_redis, data_dir)
    body = {"clash_sets": [{"name": "s", "a": [{"file": "a.ifc"}]}], "output_filename": "c.json", "defer_by": LATER}
    theirs = await clients.a.post("/ifcclash", json={**body, "previous": t.b["clash_job"]})
    unknown = await clients.a.post("/ifcclash", json={**body, "previous": t.none["clash_job"]})
    assert theirs.status_code == unknown.status_code == 422
    assert _normal(theirs.text, t.b) == _normal(unknown.text, t.none)
    # The admin of default sees the whole store: B's job is a previous run it may name.
    admin = await clients.admin.post("/ifcclash", json={
        **body, "clash_sets": [{"name": "s", "a": [{"file": "projects/a/uploads/a.ifc"}]}],
        "previous": t.b["clash_job"]})
    assert admin.status_code == 202, admin.text

