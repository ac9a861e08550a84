"""A few broken elements are skipped and reported (count, GlobalIds, error of each); the job goes on.

Only a model whose every element fails fails its job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import ifcopenshell
import pytest
from broken import broken_walls

from ifcservices.tools.geometry_report import EMPTY


@pytest.fixture(scope="module")
def broken(data_dir: Path) -> dict[str, dict[str, Any]]:
    """Each model's path and the GlobalIds of its broken walls, by kind."""
    models = {
        "cut_away": broken_walls(cut_away=("B",)),
        "cut_and_flat": broken_walls(cut_away=("B",), flat=("C",)),
        "bad_property": broken_walls(bad_property=("A", "D")),
        "all_cut_away": broken_walls(cut_away=("A", "B", "C", "D")),
        "all_bad_property": broken_walls(bad_property=("A", "B", "C", "D")),
    }
    found: dict[str, dict[str, Any]] = {}
    for kind, model in models.items():
        relative = f"uploads/broken_{kind}.ifc"
        model.write(str(data_dir / relative))
        reread = ifcopenshell.open(str(data_dir / relative))
        found[kind] = {"path": relative, "ids": {w.Name: w.GlobalId for w in reread.by_type("IfcWall")}}
    return found


def skipped_ids(report: dict[str, Any]) -> list[str]:
    return sorted(entry["global_id"] for entry in report["elements"])


async def test_a_take_off_skips_a_wall_cut_away_entirely_and_names_it(
    client: httpx.AsyncClient, broken: dict[str, dict[str, Any]], data_dir: Path
) -> None:
    model = broken["cut_away"]
    response = await client.post(
        "/ifc5d/calculate-qtos", json={"input_file": model["path"], "output_file": "output/ifc5d/cut_away.ifc"}
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["elements_quantified"] == 3
    report = result["skipped_elements"]
    assert report["count"] == 1 and skipped_ids(report) == [model["ids"]["B"]]
    entry = report["elements"][0]
    assert entry["ifc_class"] == "IfcWall" and entry["name"] == "B"
    assert "zero-size array to reduction operation maximum" in entry["error"]
    written = ifcopenshell.open(str(data_dir / "output/ifc5d/cut_away.ifc"))
    quantified = {w.Name for w in written.by_type("IfcWall") if any(r.is_a("IfcRelDefinesByProperties") and
                  r.RelatingPropertyDefinition.is_a("IfcElementQuantity") for r in w.IsDefinedBy)}
    assert quantified == {"A", "C", "D"}


async def test_a_take_off_where_every_element_fails_fails_naming_the_first(
    client: httpx.AsyncClient, broken: dict[str, dict[str, Any]]
) -> None:
    response = await client.post("/ifc5d/calculate-qtos", json={"input_file": broken["all_cut_away"]["path"]})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "nothing_processed"
    assert error["message"].startswith(
        "calculate-qtos of uploads/broken_all_cut_away.ifc: all 4 elements failed; the first, IfcWall "
    )


async def test_a_conversion_lists_the_elements_that_produced_no_geometry_with_the_reason(
    client: httpx.AsyncClient, broken: dict[str, dict[str, Any]]
) -> None:
    model = broken["cut_and_flat"]
    body = {"input_filename": model["path"], "output_filename": "output/ifcconvert/cut_and_flat.glb"}
    response = await client.post("/ifcconvert/ifcconvert", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["element_count"] == 2  # A and D
    report = result["elements_without_geometry"]
    assert report["count"] == 2
    errors = {entry["name"]: entry["error"] for entry in report["elements"]}
    assert skipped_ids(report) == sorted([model["ids"]["B"], model["ids"]["C"]])
    assert errors["B"] == EMPTY
    assert "Non-positive extrusion height" in errors["C"]


async def test_a_conversion_of_a_sound_model_lists_nothing(client: httpx.AsyncClient) -> None:
    body = {"input_filename": "uploads/walls.ifc", "output_filename": "output/ifcconvert/sound.glb"}
    result = (await client.post("/ifcconvert/ifcconvert", json=body)).json()
    assert result["elements_without_geometry"] == {"count": 0, "elements": []}


async def test_clash_detection_leaves_out_walls_without_geometry_and_says_so(
    client: httpx.AsyncClient, broken: dict[str, dict[str, Any]]
) -> None:
    model = broken["cut_and_flat"]
    body = {"clash_sets": [{"name": "s", "a": [{"file": model["path"]}]}],
            "output_filename": "output/ifcclash/cut_and_flat.json"}
    response = await client.post("/ifcclash/ifcclash", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["clash_count"] == 0  # A crossed B, which has no volume left
    assert result["skipped_elements"]["count"] == 2
    assert skipped_ids(result["skipped_elements"]) == sorted([model["ids"]["B"], model["ids"]["C"]])


async def test_a_csv_export_skips_elements_whose_values_cannot_be_read(
    client: httpx.AsyncClient, broken: dict[str, dict[str, Any]], data_dir: Path
) -> None:
    model = broken["bad_property"]
    body = {"filename": model["path"], "output_filename": "output/ifccsv/bad_property.csv",
            "query": "IfcWall", "attributes": ["Name", "Pset_WallCommon.FireRating"]}
    response = await client.post("/ifccsv/ifccsv", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["rows"] == 2
    report = result["skipped_elements"]
    assert report["count"] == 2 and skipped_ids(report) == sorted([model["ids"]["A"], model["ids"]["D"]])
    assert all("wrappedValue" in entry["error"] for entry in report["elements"])
    rows = (data_dir / "output/ifccsv/bad_property.csv").read_text().splitlines()
    assert sorted(row.split(",")[1] for row in rows[1:]) == ["B", "C"]


async def test_a_csv_export_where_every_element_fails_fails(
    client: httpx.AsyncClient, broken: dict[str, dict[str, Any]]
) -> None:
    body = {"filename": broken["all_bad_property"]["path"], "output_filename": "output/ifccsv/all_bad.csv",
            "query": "IfcWall", "attributes": ["Pset_WallCommon.FireRating"]}
    response = await client.post("/ifccsv/ifccsv", json=body)
    assert response.status_code == 422 and response.json()["error"]["type"] == "nothing_processed"


async def test_a_json_export_skips_entities_it_cannot_read_and_counts_the_rest(
    client: httpx.AsyncClient, broken: dict[str, dict[str, Any]], data_dir: Path
) -> None:
    model = broken["bad_property"]
    body = {"filename": model["path"], "output_filename": "output/ifc2json/bad_property.json"}
    response = await client.post("/ifc2json/ifc2json", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert skipped_ids(result["skipped_elements"]) == sorted([model["ids"]["A"], model["ids"]["D"]])
    document = json.loads((data_dir / "output/ifc2json/bad_property.json").read_text())
    assert document["entity_count"] == result["entity_count"] == len(document["entities"]) == 6
    assert document["skipped_elements"] == result["skipped_elements"]
    assert {e["attributes"].get("Name") for e in document["entities"] if e["type"] == "IfcWall"} == {"B", "C"}


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/ifcconvert/ifcconvert", {"input_filename": "{m}", "output_filename": "output/ifcconvert/all_cut.glb"}),
        ("/ifcclash/ifcclash", {"clash_sets": [{"name": "s", "a": [{"file": "{m}"}]}],
                                "output_filename": "output/ifcclash/all_cut.json"}),
    ],
    ids=["convert", "clash"],
)
async def test_geometry_of_a_model_whose_every_element_fails_fails_the_job(
    client: httpx.AsyncClient, broken: dict[str, dict[str, Any]], route: str, body: dict[str, Any]
) -> None:
    filled = json.loads(json.dumps(body).replace("{m}", broken["all_cut_away"]["path"]))
    response = await client.post(route, json=filled)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "nothing_processed"
    assert "uploads/broken_all_cut_away.ifc: all 4 elements failed; the first, IfcWall " in error["message"]
    assert error["message"].endswith(EMPTY)
