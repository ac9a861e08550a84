"""Every tool through the whole pipeline: gateway -> Redis queue -> arq worker -> IFC service -> output file,
on both storage backends: the data directory, and a bucket of a real S3 API server (moto's)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import httpx
import ifcopenshell
import pytest
from ifcmodels import GRID, guid_of  # noqa: F401 - GRID documents the model sizes used here
from live_env import live_env

from tests.conftest import submit, until


@pytest.fixture(params=["local", "s3"])
def env(request: pytest.FixtureRequest, redis_url, data_dir: Path) -> dict[str, str]:
    """The real services (one `python -m ifcservices all` process) behind the gateway and worker, on the
    data directory or on S3 (the gateway, worker and services then share the bucket, and no folder)."""
    if request.param == "local":
        return live_env(redis_url, data_dir, request.getfixturevalue("live_services"))
    s3 = request.getfixturevalue("s3_services")
    return {**live_env(redis_url, data_dir, s3.url), **s3.env}


@pytest.fixture
def api(worker, api):
    return api


async def run(api, path: str, body: dict, timeout: float = 120.0) -> dict:
    return await until(api, await submit(api, path, body), timeout=timeout)


async def download(api, path: str) -> bytes:
    # On S3 the gateway answers with a redirect to a presigned URL of the bucket.
    r = await api.get(f"/files/{path}", follow_redirects=True)
    assert r.status_code == 200, r.text
    return r.content


async def upload(api, name: str, content: bytes) -> None:
    r = await api.post("/upload/ifc", files={"file": (name, content)})
    assert r.status_code == 201, r.text


async def test_convert_the_fzk_house_sample_to_a_glb_that_parses(api, data_dir):
    if not (data_dir / "uploads" / "AC20-FZK-Haus.ifc").exists():
        pytest.skip("shared samples not present")
    view = await run(api, "/ifcconvert", {"input_filename": "AC20-FZK-Haus.ifc", "output_filename": "haus.glb"})
    assert view["status"] == "complete", view
    assert view["result"]["output_files"] == ["output/ifcconvert/haus.glb"]
    glb = await download(api, "output/ifcconvert/haus.glb")
    magic, version, length = struct.unpack("<4sII", glb[:12])
    assert (magic, version, length) == (b"glTF", 2, len(glb))
    chunk_length, chunk_type = struct.unpack("<I4s", glb[12:20])
    gltf = json.loads(glb[20 : 20 + chunk_length])
    assert chunk_type == b"JSON" and len(gltf["meshes"]) >= 20


async def test_clash_finds_exactly_the_crossing_walls(api, data_dir):
    body = {"clash_sets": [{"name": "walls", "a": [{"file": "walls.ifc"}]}], "output_filename": "walls.json"}
    view = await run(api, "/ifcclash", body)
    assert view["status"] == "complete", view
    assert view["result"]["clash_count"] == 1
    [clash] = view["result"]["clash_sets"][0]["clashes"]
    walls = data_dir / "uploads" / "walls.ifc"
    assert {clash["a_global_id"], clash["b_global_id"]} == {guid_of(walls, "A"), guid_of(walls, "B")}
    report = json.loads(await download(api, "output/ifcclash/walls.json"))
    assert len(report[0]["clashes"]) == 1


async def test_ids_check_reports_the_walls_missing_their_fire_rating(api, data_dir):
    body = {"ifc_filename": "walls.ifc", "ids_filename": "fire.ids", "output_filename": "fire.json"}
    view = await run(api, "/ifctester", body)
    assert view["status"] == "complete", view
    result = view["result"]
    assert (result["passed"], result["failed"], result["checks_failed"]) == (0, 1, 3)
    failing = {f["name"] for f in result["specifications"][0]["failures"]}
    assert failing == {"B", "C", "D"}
    assert json.loads(await download(api, "output/ifctester/fire.json"))


async def test_csv_export_then_import_round_trip(api):
    view = await run(api, "/ifccsv", {"filename": "walls.ifc", "output_filename": "walls.csv", "query": "IfcWall",
                                      "attributes": ["GlobalId", "Name"]})
    assert view["status"] == "complete", view
    assert view["result"]["rows"] == 4
    text = (await download(api, "output/ifccsv/walls.csv")).decode()
    assert text.count("\n") >= 4 and ",A" in text
    view = await run(api, "/ifccsv/import", {"ifc_filename": "walls.ifc", "csv_filename": "output/ifccsv/walls.csv"})
    assert view["status"] == "complete", view
    assert view["result"]["output_files"] == ["output/ifccsv/walls_updated.ifc"]


async def test_diff_of_two_models_counts_the_changes(api, data_dir):
    import ifcopenshell.api

    model = ifcopenshell.open(str(data_dir / "uploads" / "walls.ifc"))
    walls = {w.Name: w for w in model.by_type("IfcWall")}
    walls["A"].Name = "A renamed"
    ifcopenshell.api.run("root.remove_product", model, product=walls["D"])
    await upload(api, "walls_edited.ifc", model.to_string().encode())
    view = await run(api, "/ifcdiff", {"old_file": "walls.ifc", "new_file": "walls_edited.ifc"})
    assert view["status"] == "complete", view
    result = view["result"]
    assert (result["added_count"], result["deleted_count"], result["changed_count"]) == (0, 1, 1)
    assert json.loads(await download(api, "output/ifcdiff/diff.json"))


async def test_ifc2json_and_qto_write_their_outputs(api, data_dir):
    view = await run(api, "/ifc2json", {"filename": "walls.ifc", "output_filename": "walls.json"})
    assert view["status"] == "complete", view
    entities = json.loads(await download(api, "output/ifc2json/walls.json"))
    assert entities and view["result"]["entity_count"] > 4
    view = await run(api, "/calculate-qtos", {"input_file": "walls.ifc"})
    assert view["status"] == "complete", view
    model = ifcopenshell.file.from_string((await download(api, "output/ifc5d/walls_qto.ifc")).decode())
    assert any(q.Name.startswith("Qto_") for q in model.by_type("IfcElementQuantity"))


async def test_garbage_and_truncated_files_fail_their_jobs_clearly_and_the_service_stays_healthy(api, env):
    for name in ("garbage.ifc", "truncated.ifc"):
        view = await run(api, "/ifc2json", {"filename": name, "output_filename": f"{name}.json"})
        assert view["status"] == "failed"
        assert view["tries"] == 1
        assert view["error"]["status_code"] == 422 and view["error"]["service"] == "ifc2json"
        assert name in view["error"]["message"]
    assert httpx.get(env["IFCFLOW_IFC2JSON_URL"] + "/health").status_code == 200


async def test_a_segfault_fails_only_that_job(api, env):
    crashed = await run(api, "/ifcconvert", {"input_filename": "walls__segv__.ifc", "output_filename": "x.glb"})
    assert crashed["status"] == "failed"
    assert "crashed" in crashed["error"]["message"] and "signal 11" in crashed["error"]["message"]
    fine = await run(api, "/ifcconvert", {"input_filename": "walls.ifc", "output_filename": "fine.glb"})
    assert fine["status"] == "complete"


async def test_validate_passes_a_clean_model_and_writes_its_report(api):
    view = await run(api, "/ifcvalidate", {"ifc_filename": "walls.ifc", "output_filename": "walls_check.json"})
    assert view["status"] == "complete", view
    assert view["result"]["valid"] is True and view["result"]["issue_count"] == 0
    assert view["result"]["output_files"] == ["output/ifctester/walls_check.json"]
    assert json.loads(await download(api, "output/ifctester/walls_check.json"))["issue_count"] == 0


async def test_patch_extracts_the_walls_into_a_model_of_walls_alone(api, data_dir):
    body = {"input_file": "walls.ifc", "output_file": "walls_only.ifc", "recipe": "ExtractElements",
            "arguments": ["IfcWall", True]}
    r = await api.post("/patch/execute", json=body)
    assert r.status_code == 202, r.text
    view = await until(api, r.json()["job_id"], timeout=120)
    assert view["status"] == "complete", view
    [written] = view["result"]["output_files"]
    patched = ifcopenshell.file.from_string((await download(api, written)).decode())
    original = ifcopenshell.open(str(data_dir / "uploads" / "walls.ifc"))
    assert {w.GlobalId for w in patched.by_type("IfcWall")} == {w.GlobalId for w in original.by_type("IfcWall")}


async def test_patch_splits_the_model_into_the_folder_it_is_given(api):
    # A recipe's folder argument: what it writes there is listed after the output file (published on S3).
    body = {"input_file": "walls.ifc", "output_file": "walls_split.ifc", "recipe": "SplitByBuildingStorey",
            "arguments": ["storeys"]}
    view = await run(api, "/patch/execute", body)
    assert view["status"] == "complete", view
    part = "output/ifcpatch/storeys/0-Ground floor.ifc"
    assert view["result"]["output_files"] == ["output/ifcpatch/walls_split.ifc", part]
    assert view["result"]["arguments_used"] == ["output/ifcpatch/storeys"]
    storey = ifcopenshell.file.from_string((await download(api, part)).decode())
    assert {w.Name for w in storey.by_type("IfcWall")} == {"A", "B", "C", "D"}
