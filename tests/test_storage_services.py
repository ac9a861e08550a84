"""The IFC services on the store of uploads and outputs (issue 18), on both backends: a real
``python -m ifcservices all`` process reads its inputs from the store (the data directory, or an S3
bucket through the input cache) and leaves its outputs there as versions; a job pinned to an older
version reads those bytes; a failed job leaves nothing behind; on S3 an input is fetched once for
concurrent jobs and the input cache keeps to its bound."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from settings import Settings
from storage import Storage, open_storage
from storage.local import LocalStorage
from tests.ifcservices.ifcmodels import SAMPLES, WALLS, build_walls, grid_walls
from tests.real_pipeline import start_services
from tests.s3_server import _admin

CACHE_BOUND = 20_000  # bytes: three or four small models, so the bound is reached within the module
SLAB = SAMPLES / "slab-standard-case.ifc"


@dataclass
class Backend:
    name: str
    url: str  # the services' /health and operations
    storage: Storage  # the test's own client of the same store
    scratch: Path


async def _put(storage: Storage, key: str, data: bytes) -> str:
    async def chunks() -> AsyncIterator[bytes]:
        yield data

    return (await storage.receive(key, chunks(), len(data) + 1)).version


async def _get(storage: Storage, key: str, version: str | None = None) -> bytes:
    return b"".join([chunk async for chunk in storage.read(key, version)])


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("models")
    made = {}
    for name, walls in (("walls", WALLS), ("grid", grid_walls(3))):
        build_walls(walls).write(str(folder / f"{name}.ifc"))
        made[name] = (folder / f"{name}.ifc").read_bytes()
    made["garbage"] = b"this is a shopping list, not a building\n"
    return made


@pytest.fixture(scope="module", params=["local", "s3"])
def backend_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[str, dict[str, str], Path, Path]]:
    """(name, services' environment, data directory, scratch folder) of each backend."""
    root = tmp_path_factory.mktemp(request.param)
    data, scratch = root / "data", root / "scratch"
    data.mkdir()
    env = {"IFCFLOW_SERVICE_CONCURRENCY": "4", "IFCFLOW_GEOMETRY_CACHE_BYTES": "0",
           "IFCFLOW_SCRATCH_DIR": str(scratch), "IFCFLOW_INPUT_CACHE_BYTES": str(CACHE_BOUND)}
    if request.param == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = f"services-{uuid.uuid4().hex[:12]}"
        _admin(endpoint).create_bucket(Bucket=bucket)
        env |= {"IFCFLOW_STORAGE_URL": f"s3://{bucket}/store", "IFCFLOW_S3_ENDPOINT_URL": endpoint}
    yield request.param, env, data, scratch


@pytest.fixture(scope="module")
def services(backend_env: tuple[str, dict[str, str], Path, Path]) -> Iterator[str]:
    _backend, env, data, _scratch = backend_env
    base, process = start_services(data, data.parent / "ifcservices.log", env)
    yield base
    process.stop()


@pytest.fixture
async def backend(backend_env: tuple[str, dict[str, str], Path, Path], services: str) -> AsyncIterator[Backend]:
    name, env, data, scratch = backend_env
    if name == "local":
        storage: Storage = LocalStorage(data)
    else:
        settings = Settings(storage_url=env["IFCFLOW_STORAGE_URL"], s3_endpoint_url=env["IFCFLOW_S3_ENDPOINT_URL"])
        storage = open_storage(settings)
    await storage.start()
    try:
        yield Backend(name, services, storage, scratch)
    finally:
        await storage.close()


async def _run(backend: Backend, path: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=backend.url, timeout=120) as http:
        return await http.post(path, json=body)


async def _health(backend: Backend) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=backend.url, timeout=10) as http:
        return dict((await http.get("/health")).json()["services"]["ifc2json"])


def _variant(model: bytes, tag: str) -> bytes:
    """Another version of the same model: a STEP comment after its first line."""
    first, rest = model.split(b"\n", 1)
    return first + f"\n/* {tag} */\n".encode() + rest


def _name(stem: str, suffix: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}{suffix}"  # each test its own keys: the store lives for the module


def _job_folders(scratch: Path) -> list[str]:
    jobs = scratch / "jobs"
    return sorted(os.listdir(jobs)) if jobs.is_dir() else []


async def test_a_real_sample_is_converted_from_the_store_and_its_output_is_a_version_of_it(backend):
    if not SLAB.is_file():
        pytest.skip(f"sample models not found in {SAMPLES}")
    source, output = f"uploads/{_name('slab', '.ifc')}", f"output/ifcconvert/{_name('slab', '.glb')}"
    await _put(backend.storage, source, SLAB.read_bytes())
    r = await _run(backend, "/ifcconvert/ifcconvert", {"input_filename": source, "output_filename": output})
    assert r.status_code == 200, r.text
    assert r.json()["output_files"] == [output]
    found = await backend.storage.stat(output)
    assert found is not None and found.latest
    data = await _get(backend.storage, output)
    assert data[:4] == b"glTF" and found.version == hashlib.sha256(data).hexdigest() and found.size == len(data)
    # The output is a version in its own right: readable by its sha256 whatever comes later.
    assert await _get(backend.storage, output, found.version) == data
    assert _job_folders(backend.scratch) == []


async def test_a_job_pinned_to_an_older_version_reads_those_bytes(backend, models):
    source = f"uploads/{_name('model', '.ifc')}"
    old = await _put(backend.storage, source, models["walls"])
    new = await _put(backend.storage, source, models["grid"])
    assert old != new

    async def to_json(pins: dict[str, str] | None) -> dict[str, Any]:
        output = f"output/ifc2json/{_name('model', '.json')}"
        body: dict[str, Any] = {"filename": source, "output_filename": output}
        if pins is not None:
            body["input_version_ids"] = pins
        r = await _run(backend, "/ifc2json/ifc2json", body)
        assert r.status_code == 200, r.text
        written = json.loads(await _get(backend.storage, output))
        return {"count": r.json()["entity_count"], "names": {e["attributes"].get("Name") for e in written["entities"]}}

    pinned_old, pinned_new, latest = await asyncio.gather(
        to_json({source: old}), to_json({source: new}), to_json(None))
    assert {"A", "B", "C", "D"} <= pinned_old["names"] and "X0" not in pinned_old["names"]
    assert "X0" in pinned_new["names"] and "A" not in pinned_new["names"]
    assert latest == pinned_new
    # The latest is still the newer upload: reading a pinned version changed nothing in the store.
    assert (await backend.storage.stat(source)).version == new


async def test_a_pin_naming_no_version_is_refused_with_the_input_and_version(backend, models):
    source = f"uploads/{_name('model', '.ifc')}"
    await _put(backend.storage, source, models["walls"])
    missing = "0" * 64
    r = await _run(backend, "/ifc2json/ifc2json", {"filename": source, "output_filename": "output/ifc2json/x.json",
                                                   "input_version_ids": {source: missing}})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"] == f"input {source}: version {missing} not found"
    assert await backend.storage.stat("output/ifc2json/x.json") is None


async def test_a_failed_job_leaves_no_output_in_the_store_and_no_job_folder(backend, models):
    source, output = f"uploads/{_name('garbage', '.ifc')}", f"output/ifc2json/{_name('garbage', '.json')}"
    await _put(backend.storage, source, models["garbage"])
    r = await _run(backend, "/ifc2json/ifc2json", {"filename": source, "output_filename": output})
    assert r.status_code == 422, r.text
    assert await backend.storage.stat(output) is None
    assert [v async for v in backend.storage.versions(output)] == []
    assert _job_folders(backend.scratch) == []


async def test_concurrent_jobs_on_one_s3_input_fetch_it_once_and_the_cache_keeps_its_bound(backend, models):
    if backend.name != "s3":
        pytest.skip("the input cache is the S3 backend's")
    source = f"uploads/{_name('shared', '.ifc')}"
    model = _variant(models["walls"], uuid.uuid4().hex)  # bytes no earlier test cached
    version = await _put(backend.storage, source, model)
    before = (await _health(backend))["storage"]["input_cache"]
    outputs = [f"output/ifc2json/{_name('shared', '.json')}" for _ in range(3)]
    replies = await asyncio.gather(*(
        _run(backend, "/ifc2json/ifc2json", {"filename": source, "output_filename": o}) for o in outputs))
    assert [r.status_code for r in replies] == [200, 200, 200], [r.text for r in replies]
    after = (await _health(backend))["storage"]["input_cache"]
    assert after["fetches"] - before["fetches"] == 1
    assert after["hits"] - before["hits"] == 2
    assert (backend.scratch / "inputs" / f"{version}.ifc").read_bytes() == model

    # Many more models than the bound holds: the least recently used go, the folder stays within it.
    size = len(models["grid"])
    assert size * 4 > CACHE_BOUND > size
    for i in range(int(CACHE_BOUND / size) + 3):
        data = _variant(models["grid"], f"copy {i}")
        key = f"uploads/{_name('many', '.ifc')}"
        await _put(backend.storage, key, data)
        body = {"filename": key, "output_filename": f"output/ifc2json/m{i}.json"}
        r = await _run(backend, "/ifc2json/ifc2json", body)
        assert r.status_code == 200, r.text
        held = sum(p.stat().st_size for p in (backend.scratch / "inputs").iterdir() if not p.name.startswith("."))
        assert held <= CACHE_BOUND
    report = (await _health(backend))["storage"]["input_cache"]
    assert report["evicted"] > 0 and report["bytes"] <= CACHE_BOUND
    assert _job_folders(backend.scratch) == []
