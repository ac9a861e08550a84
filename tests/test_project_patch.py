"""An ifcpatch recipe's folder argument (``output_dir``) for a project's key (issue 22), through the real
pipeline: gateway, Redis, worker and the real IFC services on a data directory of the test's own.

The client names the folder relative to its project (``parts``, ``output/ifcpatch/parts``); the recipe
writes under ``projects/<p>/output/ifcpatch/`` and the project's key sees every path of the job relative
to the project. A folder leaving output/ifcpatch/ is a 422 naming the argument, and nothing is queued.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import ifcopenshell
import ifcopenshell.api.aggregate
import ifcopenshell.api.root
import ifcopenshell.api.spatial
import pytest
import redis

from store import keys
from tests.conftest import REPO, until
from tests.ifcservices.ifcmodels import WALLS, build_walls
from tests.real_pipeline import Pipeline, real_pipeline

pytest.importorskip("ifcpatch", reason="the ifcpatch service needs ifcpatch (pip install 'ifcpatch>=0.9,<0.10')")

ACME_KEY = "acme-submit-key-0001"
ADMIN_KEY = "admin-key-of-default-0001"
SPLIT = "SplitByBuildingStorey"  # ifcpatch's recipe with a folder argument: one model per storey there
# Storey names nobody else uses: a model of one found outside the data directory is this test's.
UPPER = f"Upper-{uuid.uuid4().hex[:8]}"
GROUND = "Ground floor"
PARTS = ["0-Ground floor.ifc", f"1-{UPPER}.ifc"]


def _two_storeys() -> ifcopenshell.file:
    """The walls model with C and D moved up to a second storey."""
    model = build_walls(WALLS)
    [building] = model.by_type("IfcBuilding")
    upper = ifcopenshell.api.root.create_entity(model, ifc_class="IfcBuildingStorey", name=UPPER)
    ifcopenshell.api.aggregate.assign_object(model, relating_object=building, products=[upper])
    moved = [w for w in model.by_type("IfcWall") if w.Name in ("C", "D")]
    ifcopenshell.api.spatial.assign_container(model, relating_structure=upper, products=moved)
    return model


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "uploads").mkdir(parents=True)
    return root


@pytest.fixture
def pipeline(redis_url: str, data: Path, tmp_path: Path, sync_redis: redis.Redis) -> Iterator[Pipeline]:
    api_keys = f"acme:submit:{ACME_KEY},{ADMIN_KEY}"  # a project's key, and default's admin (a bare key)
    with real_pipeline(redis_url, data, tmp_path, sync_redis, IFCFLOW_API_KEYS=api_keys) as running:
        yield running


@pytest.fixture
async def acme(pipeline: Pipeline, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=pipeline.url, headers={"X-API-Key": ACME_KEY}, timeout=60) as client:
        path = tmp_path / "house.ifc"
        _two_storeys().write(str(path))
        r = await client.post("/upload/ifc", files={"file": ("house.ifc", path.read_bytes())})
        assert r.status_code == 201 and r.json()["path"] == "uploads/house.ifc", r.text
        yield client


async def _split(client: httpx.AsyncClient, arguments: list[object], output: str = "house_split.ifc",
                 ) -> dict[str, Any]:
    body = {"input_file": "house.ifc", "output_file": output, "recipe": SPLIT, "arguments": arguments}
    r = await client.post("/patch/execute", json=body)
    assert r.status_code == 202, r.text
    view = await until(client, r.json()["job_id"], timeout=120)
    assert view["status"] == "complete", view
    return dict(view)


def _walls(path: Path) -> set[str]:
    return {w.Name for w in ifcopenshell.open(str(path)).by_type("IfcWall")}


async def test_a_projects_recipe_writes_its_folder_in_the_projects_output_and_names_it_relative(
    acme: httpx.AsyncClient, data: Path, sync_redis: redis.Redis
) -> None:
    acme_out = data / "projects" / "acme" / "output" / "ifcpatch"
    view = await _split(acme, ["parts"])
    folder = acme_out / "parts"
    assert sorted(p.name for p in folder.iterdir()) == PARTS
    assert _walls(folder / PARTS[1]) == {"C", "D"}
    assert not [p for p in data.glob("output/**/*") if p.is_file()], "nothing of acme's lands in default's"
    # The record holds store keys; acme is shown them relative to acme, the folder too.
    stored = json.loads(cast(bytes, sync_redis.hget(keys.job_meta(view["job_id"]), "args")))
    assert stored["arguments"] == ["projects/acme/output/ifcpatch/parts"]
    assert view["arguments"]["arguments"] == ["output/ifcpatch/parts"]
    assert view["result"]["arguments_used"] == ["output/ifcpatch/parts"]
    assert view["result"]["output_files"] == ["output/ifcpatch/house_split.ifc",
                                              *(f"output/ifcpatch/parts/{n}" for n in PARTS)]
    assert "projects/" not in str(view)
    status = (await acme.get(f"/jobs/{view['job_id']}/status")).json()
    assert status["result"]["output_path"] == "/output/ifcpatch/house_split.ifc", status
    r = await acme.get(f"/files/output/ifcpatch/parts/{PARTS[0]}")
    assert r.status_code == 200 and r.content == (folder / PARTS[0]).read_bytes()

    # The same folder named from output/: it exists now, which is no refusal (the recipe writes into it again).
    again = await _split(acme, ["/output/ifcpatch/parts"], output="again.ifc")
    assert again["result"]["output_files"] == ["output/ifcpatch/again.ifc",
                                               *(f"output/ifcpatch/parts/{n}" for n in PARTS)]
    # No folder: ifcpatch would write into the service's working directory; it gets one beside the output.
    for missing in ([], [None], [""]):
        bare = await _split(acme, missing, output="bare.ifc")
        assert bare["result"]["output_files"] == ["output/ifcpatch/bare.ifc",
                                                  *(f"output/ifcpatch/bare_files/{n}" for n in PARTS)], missing
    assert sorted(p.name for p in (acme_out / "bare_files").iterdir()) == PARTS
    assert not list(REPO.glob(f"*{UPPER}*")), "a recipe wrote outside the data directory"


async def test_a_folder_leaving_the_projects_output_is_refused_naming_it_and_nothing_is_queued(
    acme: httpx.AsyncClient, pipeline: Pipeline, data: Path, sync_redis: redis.Redis
) -> None:
    outside = data / "outside"
    outside.mkdir()
    acme_out = data / "projects" / "acme" / "output" / "ifcpatch"
    acme_out.mkdir(parents=True)
    (acme_out / "away").symlink_to(outside)  # a link in acme's output folder to outside of it
    (acme_out / "a_file").write_text("not a folder")
    cases = {
        "../parts": "must not contain '..'",
        "output/../../b": "must not contain '..'",
        "/etc/ifc": "must be relative to the data directory",
        "away/parts": "leaves output/ifcpatch/",
        "a_file": "is a file",
        "a_file/parts": "leaves output/ifcpatch/",
        ".versions/x": "hidden folder",
    }
    before = sync_redis.zcard(keys.RECENT_JOBS)
    for folder, reason in cases.items():
        body = {"input_file": "house.ifc", "output_file": "x.ifc", "recipe": SPLIT, "arguments": [folder]}
        r = await acme.post("/patch/execute", json=body)
        assert r.status_code == 422, (folder, r.text)
        [error] = r.json()["detail"]
        assert error["loc"] == ["body", "arguments", 0], (folder, error)
        assert reason in error["msg"] and folder in error["msg"], (folder, error)
    assert sync_redis.zcard(keys.RECENT_JOBS) == before, "a refused patch makes no job"
    assert not list(sync_redis.scan_iter(keys.JOB_META + "*"))
    assert not list(outside.iterdir())

    # Default's admin naming a project's folder writes into default's output/ifcpatch/, never acme's.
    async with httpx.AsyncClient(base_url=pipeline.url, headers={"X-API-Key": ADMIN_KEY}, timeout=60) as admin:
        r = await admin.post("/upload/ifc", files={"file": ("house.ifc", (data / "projects" / "acme" / "uploads"
                                                                         / "house.ifc").read_bytes())})
        assert r.status_code == 201, r.text
        view = await _split(admin, ["projects/acme/output/ifcpatch/taken"])
    assert view["result"]["arguments_used"] == ["output/ifcpatch/projects/acme/output/ifcpatch/taken"]
    assert sorted(p.name for p in (data / "output/ifcpatch/projects/acme/output/ifcpatch/taken").iterdir()) == PARTS
    assert not (acme_out / "taken").exists()
