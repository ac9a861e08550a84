"""ifcclash: clash counts and pairs on models whose clashes are known by construction."""

from __future__ import annotations

import json

from ifcmodels import GRID, NDJSON_HEADERS, guid_of, ndjson


def clash_body(output: str, **options):
    return {
        "clash_sets": [{"name": "walls", "a": [{"file": "uploads/walls.ifc"}]}],
        "output_filename": output,
        **options,
    }


async def test_intersection_finds_exactly_the_crossing_pair(client, data_dir):
    response = await client.post("/ifcclash/ifcclash", json=clash_body("output/ifcclash/walls.json"))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["clash_count"] == 1
    clash = result["clash_sets"][0]["clashes"][0]
    walls = data_dir / "uploads/walls.ifc"
    assert {clash["a_global_id"], clash["b_global_id"]} == {guid_of(walls, "A"), guid_of(walls, "B")}
    written = json.loads((data_dir / "output/ifcclash/walls.json").read_text())
    assert written[0]["name"] == "walls" and len(written[0]["clashes"]) == 1
    assert written[0]["a"][0]["file"] == "uploads/walls.ifc"  # no server paths in the report


async def test_collision_and_clearance_modes(client):
    collision = await client.post("/ifcclash/ifcclash", json=clash_body("output/ifcclash/c.json", mode="collision"))
    assert collision.json()["clash_count"] == 1
    near = await client.post(
        "/ifcclash/ifcclash", json=clash_body("output/ifcclash/n.json", mode="clearance", clearance=0.5)
    )
    assert near.json()["clash_count"] == 1
    # C and D stand 5 m apart, farther from A and B: a 6 m clearance catches them too.
    far = await client.post(
        "/ifcclash/ifcclash", json=clash_body("output/ifcclash/f.json", mode="clearance", clearance=6)
    )
    names = {(c["a_name"], c["b_name"]) for c in far.json()["clash_sets"][0]["clashes"]}
    assert {("C", "D"), ("D", "C")} & names


async def test_selectors_split_a_model_into_sets_a_and_b(client):
    body = {
        "clash_sets": [
            {
                "name": "A against the rest",
                "a": [{"file": "uploads/walls.ifc", "mode": "i", "selector": "IfcWall, Name=A"}],
                "b": [{"file": "uploads/walls.ifc", "mode": "e", "selector": "IfcWall, Name=A"}],
            }
        ],
        "output_filename": "output/ifcclash/split.json",
    }
    response = await client.post("/ifcclash/ifcclash", json=body)
    assert response.status_code == 200, response.text
    [clash] = response.json()["clash_sets"][0]["clashes"]
    assert (clash["a_name"], clash["b_name"]) == ("A", "B")


async def test_smart_grouping_groups_clashes_by_distance(client):
    body = {
        "clash_sets": [{"name": "grid", "a": [{"file": "uploads/grid.ifc"}]}],
        "output_filename": "output/ifcclash/grid.json",
        "smart_grouping": True,
        "max_cluster_distance": 1.0,
    }
    together = (await client.post("/ifcclash/ifcclash", json=body)).json()["clash_sets"][0]
    assert together["clash_count"] == GRID * GRID
    assert list(together["smart_groups"]) == ["grid - 1"]  # crossings 0.3 m apart chain into one group
    assert len(together["smart_groups"]["grid - 1"]) == GRID * GRID
    body["max_cluster_distance"] = 0.1
    apart = (await client.post("/ifcclash/ifcclash", json=body)).json()["clash_sets"][0]
    assert len(apart["smart_groups"]) == GRID * GRID


async def test_a_large_result_arrives_whole_as_json_and_as_ndjson(client):
    body = {
        "clash_sets": [{"name": "grid", "a": [{"file": "uploads/grid.ifc"}]}],
        "output_filename": "output/ifcclash/big.json",
    }
    plain = await client.post("/ifcclash/ifcclash", json=body)
    assert len(plain.content) > 256 * 1024  # several pipe buffers
    assert plain.json()["clash_count"] == len(plain.json()["clash_sets"][0]["clashes"]) == GRID * GRID
    streamed = ndjson((await client.post("/ifcclash/ifcclash", json=body, headers=NDJSON_HEADERS)).text)
    assert streamed[-1]["result"]["clash_count"] == GRID * GRID
    assert len(streamed[-1]["result"]["clash_sets"][0]["clashes"]) == GRID * GRID
