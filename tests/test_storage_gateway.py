"""The gateway on the store (issue 18), on both backends: uploads are versions, downloads serve any
version, presigned uploads, and every submit pins its inputs' versions.

The local backend runs the session's gateway; S3 a gateway of its own on a fresh bucket of the
session's moto server (``tests/s3_server.py``). No worker runs: what a job records is read from its
record before anything could run it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import API_KEY, Shared, start_gateway

IFC = b"ISO-10303-21;\nHEADER;ENDSEC;\nDATA;\n"


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, env: dict[str, str]) -> str:
    """The store the gateway runs on; for S3 the env names a fresh bucket before the gateway starts."""
    if request.param == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = request.getfixturevalue("s3_bucket")
        env["IFCFLOW_STORAGE_URL"] = f"s3://{bucket}/data"
        env["IFCFLOW_S3_ENDPOINT_URL"] = endpoint
    return str(request.param)


@pytest.fixture
def gateway(backend: str, env: dict[str, str], tmp_path: Path, shared: Shared) -> Iterator[str]:
    """conftest's gateway, asked for after ``backend`` changed the env."""
    if env == shared.env:
        yield shared.gateway_url()
        return
    own = start_gateway(env, tmp_path / "gateway.log")
    try:
        yield own.url
    finally:
        own.process.stop()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def upload(api: httpx.AsyncClient, name: str, data: bytes, kind: str = "ifc") -> dict[str, object]:
    r = await api.post(f"/upload/{kind}", files={"file": (name, data)})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def fetch(api: httpx.AsyncClient, path: str, **params: str) -> httpx.Response:
    """GET /files/<path>, following the S3 backend's redirect with a client that has no API key."""
    r = await api.get(f"/files/{path}", params=params)
    if r.status_code == 307:
        async with httpx.AsyncClient(timeout=30) as outside:  # the presigned URL alone must do
            direct = await outside.get(r.headers["location"])
        direct.headers["x-ifcflow-version"] = r.headers["x-ifcflow-version"]
        return direct
    return r


async def test_an_upload_downloads_byte_identical(api, backend):
    data = IFC + os.urandom(300_000)
    answer = await upload(api, "house.ifc", data)
    assert answer["version_id"] == answer["sha256"] == sha(data)
    assert answer["path"] == "uploads/house.ifc" and answer["size"] == len(data)
    r = await fetch(api, "uploads/house.ifc")
    assert r.status_code == 200 and r.content == data
    assert r.headers["x-ifcflow-version"] == sha(data)
    if backend == "local":
        assert r.headers["etag"] == f'"{sha(data)}"'
    assert (await api.get("/files/uploads/missing.ifc")).status_code == 404


async def test_a_reupload_is_a_new_version_and_every_version_stays_served(api, backend):
    first, second = IFC + b"first", IFC + b"second version"
    await upload(api, "a.ifc", first)
    await upload(api, "a.ifc", second)
    assert (await fetch(api, "uploads/a.ifc")).content == second
    assert (await fetch(api, "uploads/a.ifc", version=sha(first))).content == first
    r = await api.get("/files/uploads/a.ifc", params={"version": "0" * 64})
    assert r.status_code == 404 and "0" * 64 in r.text

    [listed] = [f for f in (await api.get("/files")).json() if f["path"] == "uploads/a.ifc"]
    assert listed["version"] == sha(second) and "versions" not in listed
    [listed] = [f for f in (await api.get("/files", params={"versions": "true"})).json()
                if f["path"] == "uploads/a.ifc"]
    assert [(v["version"], v["latest"]) for v in listed["versions"]] == [(sha(second), True), (sha(first), False)]


async def test_a_presigned_upload_is_put_then_confirmed(api, backend):
    data = IFC + os.urandom(200_000)
    r = await api.post("/uploads/presign", json={"filename": "Big Model.IFC", "file_type": "ifc",
                                                 "size": len(data)})
    assert r.status_code == 201, r.text
    grant = r.json()
    assert grant["path"] == "uploads/Big_Model.ifc" and grant["method"] == "PUT"
    upload_id = grant["upload_id"]
    r = await api.post("/uploads/confirm", json={"upload_id": upload_id})
    assert r.status_code == 409 and "nothing was uploaded" in r.text
    async with httpx.AsyncClient(timeout=30) as outside:  # no API key: the URL is the credential
        put = await outside.put(grant["url"], content=data, headers=grant["headers"])
    assert put.status_code == 200, put.text
    r = await api.post("/uploads/confirm", json={"upload_id": upload_id})
    assert r.status_code == 201, r.text
    confirmed = r.json()
    assert confirmed["path"] == "uploads/Big_Model.ifc" and confirmed["version_id"] == sha(data)
    assert confirmed["original_filename"] == "Big Model.IFC" and confirmed["size"] == len(data)
    assert (await fetch(api, "uploads/Big_Model.ifc")).content == data
    # One time only; an unknown id is 404.
    assert (await api.post("/uploads/confirm", json={"upload_id": upload_id})).status_code == 404
    assert (await api.post("/uploads/confirm", json={"upload_id": "x" * 43})).status_code == 404


async def test_a_presign_refuses_names_and_sizes_and_a_confirm_over_the_limit(api, backend, env):
    r = await api.post("/uploads/presign", json={"filename": "notes.txt", "file_type": "ifc"})
    assert r.status_code == 422 and "filename" in r.text
    r = await api.post("/uploads/presign", json={"filename": "a.ifc", "file_type": "ifc", "size": 10**15})
    assert r.status_code == 413


async def test_on_s3_a_download_is_a_redirect_any_client_can_follow(api, backend):
    if backend != "s3":
        pytest.skip("the local backend serves the file itself")
    data = IFC + b"redirected"
    await upload(api, "r.ifc", data)
    r = await api.get("/files/uploads/r.ifc")
    assert r.status_code == 307 and r.headers["x-ifcflow-version"] == sha(data)
    direct = httpx.get(r.headers["location"], timeout=30)
    assert direct.status_code == 200 and direct.content == data


async def test_a_job_records_the_version_it_was_submitted_with(api, backend):
    first, second = IFC + b"one", IFC + b"two"
    await upload(api, "model.ifc", first)
    r = await api.post("/ifcconvert", json={"input_filename": "model.ifc", "output_filename": "model.glb"})
    assert r.status_code == 202, r.text
    await upload(api, "model.ifc", second)  # before any worker could run the job
    job = (await api.get(f"/jobs/{r.json()['job_id']}")).json()
    assert job["arguments"]["input_filename"] == "uploads/model.ifc"
    assert job["arguments"]["input_version_ids"] == {"uploads/model.ifc": sha(first)}
    assert "input_version_id" not in job["arguments"]


async def test_an_explicit_pin_of_an_older_version_is_recorded(api, backend):
    first, second = IFC + b"old", IFC + b"new"
    await upload(api, "m.ifc", first)
    await upload(api, "m.ifc", second)
    for pin in ({"input_version_id": sha(first)}, {"input_version_ids": {"/uploads/m.ifc": sha(first)}}):
        r = await api.post("/ifcconvert", json={"input_filename": "/uploads/m.ifc", "output_filename": "m.glb",
                                                **pin})
        assert r.status_code == 202, r.text
        job = (await api.get(f"/jobs/{r.json()['job_id']}")).json()
        assert job["arguments"]["input_version_ids"] == {"uploads/m.ifc": sha(first)}, pin
        assert "input_version_id" not in job["arguments"]


async def test_a_diff_pins_old_and_new_files_by_their_own_fields(api, backend):
    a, b = IFC + b"a", IFC + b"b"
    await upload(api, "old.ifc", a)
    await upload(api, "old.ifc", IFC + b"a2")
    await upload(api, "new.ifc", b)
    r = await api.post("/ifcdiff", json={"old_file": "old.ifc", "new_file": "new.ifc", "old_version_id": sha(a)})
    assert r.status_code == 202, r.text
    job = (await api.get(f"/jobs/{r.json()['job_id']}")).json()
    assert job["arguments"]["input_version_ids"] == {"uploads/old.ifc": sha(a), "uploads/new.ifc": sha(b)}
    assert "old_version_id" not in job["arguments"]


async def test_an_unknown_pin_is_422_naming_the_field(api, backend, sync_redis):
    await upload(api, "p.ifc", IFC)
    missing = "1234" * 16
    cases = [
        ({"input_version_id": missing}, ["body", "input_version_id"]),
        ({"input_version_ids": {"uploads/p.ifc": missing}}, ["body", "input_version_ids", "uploads/p.ifc"]),
        ({"input_version_id": "v1"}, ["body", "input_version_id"]),
    ]
    for pin, loc in cases:
        r = await api.post("/ifcconvert", json={"input_filename": "p.ifc", "output_filename": "p.glb", **pin})
        assert r.status_code == 422, r.text
        [error] = r.json()["detail"]
        assert error["loc"] == loc and "of uploads/p.ifc" in error["msg"], error
    assert sync_redis.zcard("arq:queue") == 0


async def test_a_replay_after_a_reupload_is_still_a_replay(api, backend):
    await upload(api, "i.ifc", IFC + b"1")
    body = {"input_filename": "i.ifc", "output_filename": "i.glb"}
    first = await api.post("/ifcconvert", json=body, headers={"Idempotency-Key": "k1"})
    await upload(api, "i.ifc", IFC + b"2")
    again = await api.post("/ifcconvert", json=body, headers={"Idempotency-Key": "k1"})
    assert again.status_code == 200 and again.json()["job_id"] == first.json()["job_id"]


async def test_a_workflow_step_pins_when_it_starts(api, backend):
    data = IFC + b"wf"
    await upload(api, "w.ifc", data)
    r = await api.post("/workflows", json={"steps": [
        {"id": "convert", "operation": "ifcconvert", "arguments": {"input_filename": "w.ifc",
                                                                   "output_filename": "w.glb"}},
    ]})
    assert r.status_code == 202, r.text
    view = (await api.get(f"/workflows/{r.json()['workflow_id']}")).json()
    job = (await api.get(f"/jobs/{view['steps'][0]['job_id']}")).json()
    assert job["arguments"]["input_version_ids"] == {"uploads/w.ifc": sha(data)}
    r = await api.post("/workflows", json={"steps": [
        {"id": "convert", "operation": "ifcconvert", "arguments": {"input_filename": "w.ifc",
                                                                   "output_filename": "w.glb",
                                                                   "input_version_id": "9" * 64}},
    ]})
    assert r.status_code == 422 and "input_version_id" in r.text


async def test_the_compat_listing_and_links_read_the_store(api, backend):
    data = IFC + b"compat"
    await upload(api, "c.ifc", data)
    listed = (await api.get("/list_directories")).json()["files"]
    assert "/uploads/c.ifc" in listed
    link = (await api.post("/create_download_link", json={"file_path": "/uploads/c.ifc"})).json()
    async with httpx.AsyncClient(timeout=30) as outside:
        r = await outside.get(link["download_url"])
    assert r.status_code == 200 and r.content == data
    r = await api.get("/viewer-api/file", params={"file": "c.ifc"})
    assert r.status_code == 200 and r.content == data
    r = await api.get("/viewer-api/file", params={"file": "c.ifc"}, headers={"Range": "bytes=0-0"})
    assert r.status_code == 206 and r.content == data[:1]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_full_local_store_answers_507_to_uploads_and_presigned_puts(env, small_disk, tmp_path):
    env["IFCFLOW_DATA_DIR"] = str(small_disk)
    own = start_gateway(env, tmp_path / "gateway.log")
    try:
        async with httpx.AsyncClient(base_url=own.url, headers={"X-API-Key": API_KEY}, timeout=30) as api:
            st = os.statvfs(small_disk)
            (small_disk / "filler.bin").write_bytes(bytes(max(0, st.f_bavail * st.f_frsize - 64 * 1024)))
            r = await api.post("/upload/ifc", files={"file": ("big.ifc", b"x" * (256 * 1024))})
            assert r.status_code == 507, r.text
            assert r.json()["detail"] == "storage full: no space left on device writing uploads/big.ifc"
            assert not (small_disk / "uploads" / "big.ifc").exists()
            grant = (await api.post("/uploads/presign", json={"filename": "big.ifc", "file_type": "ifc"})).json()
            put = await api.put(grant["url"], content=b"x" * (256 * 1024))
            assert put.status_code == 507 and put.json()["detail"].startswith("storage full: "), put.text
            assert not list((small_disk / ".incoming").iterdir())
    finally:
        own.process.stop()
