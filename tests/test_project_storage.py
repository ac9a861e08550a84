"""A project's part of the store (issue 22): views on both backends, paths checked in a view, download
tokens, the result cache and retention across projects. Real LocalStorage, moto's S3 server, real Redis."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterable, AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from arq import ArqRedis

from access.grants import ANONYMOUS, Caller, Role
from access.scope import (
    OutsideProject,
    ProjectStorage,
    client_paths,
    for_caller,
    for_project,
    prefix_of,
    project_of_key,
    store_key,
)
from contracts.compat_requests import IfcPatchRequest
from contracts.download_tokens import mint_for, verify
from contracts.files import PathRefused
from contracts.operations import Operation
from contracts.patch_check import PatchRefused, check_patch_request
from contracts.requests import REQUEST_MODELS
from contracts.stored_paths import check_paths
from jobs import result_cache
from jobs.retention import sweep_versions
from service.stored import find_input
from settings import Settings
from storage import NotFound, Storage, Version
from storage.local import LocalStorage
from storage.s3 import S3Storage
from store import job_store, keys
from store.job_store import NewJob

MiB = 1 << 20
DAY = timedelta(days=1)
A_MODEL = "projects/a/uploads/m.ifc"


async def _chunks(data: bytes) -> AsyncIterable[bytes]:
    yield data


async def _put(storage: Storage, key: str, data: bytes) -> Version:
    return await storage.receive(key, _chunks(data), len(data) + 1)


async def _read(storage: Storage, key: str) -> bytes:
    return b"".join([chunk async for chunk in storage.read(key)])


async def _keys(items: AsyncIterator[Version]) -> set[str]:
    return {v.key async for v in items}


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    """The whole store, on each backend."""
    backend: Storage
    if request.param == "local":
        backend = LocalStorage(tmp_path / "data")
    else:
        endpoint, bucket = request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket")
        backend = S3Storage(bucket, "ifc/data", endpoint, "us-east-1", presign_expires=300)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


def test_prefixes_keys_and_client_paths_translate_between_store_and_project() -> None:
    assert prefix_of("default") == "" and prefix_of("a") == "projects/a/"
    assert project_of_key(A_MODEL) == "a" and project_of_key("uploads/m.ifc") == "default"
    assert project_of_key("projects/a") == "default"  # a name, not a project's key
    result = {"output_files": ["projects/a/output/x.glb", "/projects/a/output/y.csv", "projects/b/z"],
              "input_version_ids": {A_MODEL: "f" * 64}, "count": 3}
    assert client_paths(result, "a") == {"output_files": ["output/x.glb", "/output/y.csv", "projects/b/z"],
                                         "input_version_ids": {"uploads/m.ifc": "f" * 64}, "count": 3}
    assert client_paths(result, "default") == result
    with pytest.raises(ValueError):
        prefix_of("../etc")


async def test_a_projects_file_is_seen_only_in_its_own_view(store: Storage) -> None:
    a, b = for_project(store, "a"), for_project(store, "b")
    default_view = for_project(store, "default")
    written = await _put(a, "uploads/m.ifc", b"a's model")
    assert written.key == "uploads/m.ifc"
    assert (await store.stat(A_MODEL)).version == written.version  # type: ignore[union-attr]
    assert await _read(a, "uploads/m.ifc") == b"a's model"
    await _put(store, "uploads/shared.ifc", b"the default project's")

    for other in (b, default_view):
        assert await other.stat("uploads/m.ifc") is None
        assert await other.stat(A_MODEL) is None
        with pytest.raises(NotFound):
            await _read(other, A_MODEL)
        assert [v async for v in other.versions(A_MODEL)] == []
        assert other.local_path(A_MODEL) is None
    with pytest.raises(NotFound):
        await default_view.download(A_MODEL, Path(os.devnull))
    assert await _keys(a.files()) == {"uploads/m.ifc"}
    assert await _keys(a.all_versions()) == {"uploads/m.ifc"}
    assert await _keys(b.files()) == set() and await _keys(b.all_versions()) == set()
    assert await _keys(default_view.files()) == {"uploads/shared.ifc"}
    assert await _keys(default_view.files("projects/")) == set()
    assert await _keys(default_view.all_versions()) == {"uploads/shared.ifc"}
    assert await _keys(store.files()) == {A_MODEL, "uploads/shared.ifc"}  # the whole store: an admin of default
    with pytest.raises(OutsideProject):
        await _put(default_view, "projects/a/uploads/evil.ifc", b"x")
    assert await store.stat("projects/a/uploads/evil.ifc") is None


async def test_versions_and_removal_stay_relative_to_the_project(store: Storage) -> None:
    a = for_project(store, "a")
    one = await _put(a, "output/ifcconvert/x.glb", b"one")
    two = await _put(a, "output/ifcconvert/x.glb", b"two")
    assert [v.version async for v in a.versions("output/ifcconvert/x.glb")] == [two.version, one.version]
    assert {v.key async for v in a.versions("output/ifcconvert/x.glb")} == {"output/ifcconvert/x.glb"}
    await a.remove("output/ifcconvert/x.glb", one.version)
    assert [v.version async for v in store.versions("projects/a/output/ifcconvert/x.glb")] == [two.version]


async def test_views_of_the_caller(store: Storage) -> None:
    assert for_caller(store, ANONYMOUS) is store
    assert for_caller(store, Caller("k", "default", Role.admin)) is store
    for caller in (Caller("k", "default", Role.submit), Caller("k", "a", Role.admin), Caller("k", "a", Role.read)):
        view = for_caller(store, caller)
        assert isinstance(view, ProjectStorage) and view.project == caller.project
    view = for_project(for_project(store, "a"), "b")  # a view of a view: never prefixed twice
    assert isinstance(view, ProjectStorage) and view.inner is store and store_key(view, "x") == "projects/b/x"
    assert store_key(store, "x") == "x"


async def test_local_root_is_the_projects_folder(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "data")
    assert for_project(store, "a").local_root == tmp_path / "data" / "projects" / "a"
    assert for_project(store, "default").local_root == tmp_path / "data"


async def test_local_root_is_none_on_s3(store: Storage) -> None:
    if store.local_root is None:
        assert for_project(store, "a").local_root is None


async def test_a_presigned_upload_confirmed_in_a_view_lands_in_the_project(store: Storage) -> None:
    a = for_project(store, "a")
    signed = await a.presign_put("upload-in-a", MiB)
    if isinstance(store, LocalStorage):
        assert signed is None  # the gateway's own PUT writes the shared incoming area
        incoming = store.incoming_file("upload-in-a")
        incoming.parent.mkdir(parents=True, exist_ok=True)
        incoming.write_bytes(b"a big model")
    else:
        assert signed is not None
        async with httpx.AsyncClient() as http:
            assert (await http.put(signed.url, content=b"a big model", headers=signed.headers)).status_code == 200
    got = await a.confirm("upload-in-a", "uploads/big.ifc", MiB)
    assert got.key == "uploads/big.ifc"
    assert await _read(store, "projects/a/uploads/big.ifc") == b"a big model"
    assert await for_project(store, "b").stat("uploads/big.ifc") is None


def _convert(**fields: object) -> object:
    return REQUEST_MODELS[Operation.ifcconvert].model_validate(
        {"input_filename": "m.ifc", "output_filename": "m.glb", **fields})


async def test_check_paths_in_a_view_records_full_store_keys(store: Storage) -> None:
    written = await _put(for_project(store, "a"), "uploads/m.ifc", b"a's model")
    request = _convert(input_version_ids={"m.ifc": written.version})
    await check_paths(for_project(store, "a"), request, "ifcconvert")  # type: ignore[arg-type]
    assert request.input_filename == A_MODEL  # type: ignore[attr-defined]
    assert request.output_filename == "projects/a/output/ifcconvert/m.glb"  # type: ignore[attr-defined]
    assert request.input_version_ids == {A_MODEL: written.version}  # type: ignore[attr-defined]


async def test_another_projects_file_is_not_found_in_a_view(store: Storage) -> None:
    await _put(for_project(store, "a"), "uploads/m.ifc", b"a's model")
    for project, name in (("b", "m.ifc"), ("b", A_MODEL), ("default", A_MODEL), ("default", "m.ifc")):
        request = _convert(input_filename=name)
        with pytest.raises(PathRefused, match="not found"):
            await check_paths(for_project(store, project), request, "ifcconvert")  # type: ignore[arg-type]
        assert await find_input(for_project(store, project), name) is None
    whole = _convert(input_filename=A_MODEL)
    await check_paths(store, whole, "ifcconvert")  # type: ignore[arg-type]  # an admin of default names it
    assert whole.input_filename == A_MODEL  # type: ignore[attr-defined]
    assert await find_input(for_project(store, "a"), "m.ifc") == "uploads/m.ifc"


_SPLIT = {"recipes": [{"name": "SplitByBuildingStorey", "is_custom": False, "parameters": [
    {"name": "output_dir", "types": ["str", "NoneType"], "required": False, "path_role": "output_dir"}]}]}


def _split(folder: str) -> IfcPatchRequest:
    return IfcPatchRequest(input_file="m.ifc", output_file="m.ifc", recipe="SplitByBuildingStorey",
                           arguments=[folder])


async def test_a_recipes_folder_in_a_view_is_sent_as_the_projects_output_key(store: Storage) -> None:
    """On either backend (S3 has no folders: the output rule alone), as for an output file."""
    acme = for_project(store, "acme")
    for folder in ("parts", "output/ifcpatch/parts", "/output/ifcpatch/parts", "./parts/"):
        request = _split(folder)
        await check_patch_request(request, _SPLIT, acme)
        assert request.arguments == ["projects/acme/output/ifcpatch/parts"], folder
    request = _split("projects/acme/output/ifcpatch/x")  # default's key naming acme's folder stays default's
    await check_patch_request(request, _SPLIT, for_project(store, "default"))
    assert request.arguments == ["output/ifcpatch/projects/acme/output/ifcpatch/x"]
    for folder, reason in (("../parts", "'..'"), ("/etc/x", "relative"), (".versions", "hidden")):
        with pytest.raises(PatchRefused) as refused:
            await check_patch_request(_split(folder), _SPLIT, acme)
        assert refused.value.loc == ("arguments", 0)
        assert reason in refused.value.message, refused.value.message


async def test_a_link_out_of_the_projects_folder_is_no_file_of_the_project(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "data")
    await store.start()
    await _put(for_project(store, "b"), "uploads/secret.ifc", b"b's model")
    await _put(store, "uploads/open.ifc", b"default's model")
    (tmp_path / "data" / "projects" / "a" / "uploads").mkdir(parents=True)
    link = tmp_path / "data" / "projects" / "a" / "uploads" / "m.ifc"
    link.symlink_to(tmp_path / "data" / "projects" / "b" / "uploads" / "secret.ifc")
    (tmp_path / "data" / "uploads" / "peek.ifc").symlink_to(link)  # default's link into the projects
    a, default_view = for_project(store, "a"), for_project(store, "default")
    assert await a.stat("uploads/m.ifc") is None
    assert await _keys(a.files()) == set()
    with pytest.raises(NotFound):
        await _read(a, "uploads/m.ifc")
    for view in (a, default_view):
        name = "m.ifc" if view is a else "peek.ifc"
        with pytest.raises(PathRefused, match="not found"):
            await check_paths(view, _convert(input_filename=name), "ifcconvert")  # type: ignore[arg-type]
        assert await find_input(view, name) is None
    assert await default_view.stat("uploads/peek.ifc") is None
    assert await _keys(default_view.files("uploads/")) == {"uploads/open.ifc"}


async def test_a_download_token_made_in_a_view_names_the_full_store_key(store: Storage) -> None:
    token, grant = mint_for(b"s" * 32, for_project(store, "a"), "uploads/m.ifc", 60)
    assert grant.path == A_MODEL and verify(b"s" * 32, token).path == A_MODEL
    assert mint_for(b"s" * 32, store, "uploads/m.ifc", 60)[1].path == "uploads/m.ifc"


async def test_a_cache_hit_never_crosses_projects(store: Storage, aredis: ArqRedis) -> None:
    for project in ("a", "b"):
        await _put(for_project(store, project), "uploads/m.ifc", b"the same bytes")

    async def key_of(project: str) -> tuple[str | None, dict[str, str]]:
        request = _convert()
        await check_paths(for_project(store, project), request, "ifcconvert")  # type: ignore[arg-type]
        return await result_cache.cache_key(store, Operation.ifcconvert, request.model_dump(mode="json"))  # type: ignore[attr-defined]

    key_a, outputs_a = await key_of("a")
    key_b, outputs_b = await key_of("b")
    assert key_a is not None and key_b is not None and key_a != key_b
    assert (await key_of("a"))[0] == key_a
    await _put(store, outputs_a['["output_filename"]'], b"a's glb")
    result = {"output_files": [outputs_a['["output_filename"]']]}
    await result_cache.remember(aredis, store, key_a, outputs_a, result, 60)
    assert await result_cache.reuse(aredis, store, key_b, outputs_b) is None
    assert (await result_cache.reuse(aredis, store, key_a, outputs_a))["cached"] is True  # type: ignore[index]
    await aredis.delete(keys.RESULT_CACHE + key_a)


def _after_this_second(moment: datetime) -> datetime:
    boundary = moment.replace(microsecond=0) + timedelta(seconds=1)
    while time.time() <= boundary.timestamp():
        time.sleep(0.01)  # waiting for the clock itself (S3 counts in seconds), not for an event
    return boundary


async def test_retention_sweeps_project_files_and_keeps_what_a_job_pins(
    store: Storage, aredis: ArqRedis, redis_url: str
) -> None:
    a = for_project(store, "a")
    pinned = await _put(a, "uploads/m.ifc", b"pinned")
    await _put(a, "uploads/m.ifc", b"superseded")
    gone = await _put(a, "uploads/old.ifc", b"old")
    output = await _put(a, "output/ifc2json/m.json", b"{}")
    cutoff = _after_this_second(max(v.modified for v in (pinned, gone, output)))
    latest = await _put(a, "uploads/m.ifc", b"recent")
    settings = Settings(redis_url=redis_url, retention_uploads_days=1, retention_outputs_days=0)
    request = {"filename": A_MODEL, "output_filename": "projects/a/output/ifc2json/m.json",
               "input_version_ids": {A_MODEL: pinned.version}}
    job_id = job_store.new_job_id()
    await job_store.create(aredis, settings, NewJob(Operation.ifc2json, request, job_id, project="a"))
    try:
        sweep = await sweep_versions(store, aredis, settings, now=cutoff + DAY)
    finally:
        await job_store.cancel(aredis, settings, job_id)
    kept = {(v.key, v.version) async for v in store.all_versions()}
    assert kept == {(A_MODEL, pinned.version), (A_MODEL, latest.version),
                    ("projects/a/output/ifc2json/m.json", output.version)}
    assert (sweep.removed, sweep.kept_pinned) == (2, 1)
    assert await a.stat("uploads/old.ifc") is None
