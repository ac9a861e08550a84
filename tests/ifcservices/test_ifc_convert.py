"""ifcconvert: real conversions of built and sample models, checked by parsing what was written."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from ifcmodels import NDJSON_HEADERS, ndjson


def parse_glb(data: bytes) -> dict[str, Any]:
    """The JSON chunk of a binary glTF 2.0 file, after checking its header."""
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    chunk_length, chunk_type = struct.unpack_from("<I4s", data, 12)
    assert chunk_type == b"JSON"
    document: dict[str, Any] = json.loads(data[20 : 20 + chunk_length])
    return document


def obj_vertices(path: Path) -> list[tuple[float, float, float]]:
    lines = path.read_text().splitlines()
    return [(float(x), float(y), float(z)) for _v, x, y, z in (line.split() for line in lines if line.startswith("v "))]


async def test_sample_house_converts_to_a_glb_that_parses_with_progress_lines(client, samples, data_dir):
    body = {"input_filename": "uploads/AC20-FZK-Haus.ifc", "output_filename": "output/ifcconvert/house.glb"}
    response = await client.post("/ifcconvert/ifcconvert", json=body, headers=NDJSON_HEADERS)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    events = ndjson(response.text)
    progress = [e for e in events if e["event"] == "progress"]
    assert events[-1]["event"] == "result"
    assert any(e["phase"] == "creating geometry" for e in progress)
    percents = [e["percent"] for e in progress]
    assert percents == sorted(percents) and percents[-1] == 100.0
    result = events[-1]["result"]
    assert result["output_files"] == ["output/ifcconvert/house.glb"]
    assert result["format"] == "glb"
    data = (data_dir / "output/ifcconvert/house.glb").read_bytes()
    assert result["size_bytes"] == len(data)
    gltf = parse_glb(data)
    assert gltf["asset"]["version"] == "2.0"
    # One node per element; identical shapes (the windows) share their mesh.
    assert len(gltf["nodes"]) == result["element_count"] >= 50
    assert all(node["name"].startswith("product-") for node in gltf["nodes"])
    assert gltf["meshes"] and gltf["buffers"][0]["byteLength"] > 0


async def test_include_keeps_only_the_requested_classes(client, samples):
    body = {
        "input_filename": "uploads/AC20-FZK-Haus.ifc",
        "output_filename": "output/ifcconvert/windows.glb",
        "include": ["IfcWindow"],
    }
    response = await client.post("/ifcconvert/ifcconvert", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["element_count"] == 11  # the sample's eleven windows


async def test_obj_comes_with_its_material_file(client, data_dir):
    body = {"input_filename": "uploads/walls.ifc", "output_filename": "output/ifcconvert/obj/walls.obj"}
    response = await client.post("/ifcconvert/ifcconvert", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["output_files"] == ["output/ifcconvert/obj/walls.mtl", "output/ifcconvert/obj/walls.obj"]
    assert "mtllib walls.mtl" in (data_dir / "output/ifcconvert/obj/walls.obj").read_text()
    assert (data_dir / "output/ifcconvert/obj/walls.mtl").read_text().count("newmtl") >= 1
    # OBJ has no node transforms: wall D, at x = 30 m, is placed in the vertices themselves.
    assert max(x for x, _y, _z in obj_vertices(data_dir / "output/ifcconvert/obj/walls.obj")) == 35.0


async def test_world_coordinates_move_placements_into_the_vertices(client, data_dir):
    local = {"input_filename": "uploads/walls.ifc", "output_filename": "output/ifcconvert/local.glb"}
    world = {**local, "output_filename": "output/ifcconvert/world.glb", "use_world_coords": True}
    for body in (local, world):
        assert (await client.post("/ifcconvert/ifcconvert", json=body)).status_code == 200
    local_gltf = parse_glb((data_dir / "output/ifcconvert/local.glb").read_bytes())
    world_gltf = parse_glb((data_dir / "output/ifcconvert/world.glb").read_bytes())
    # glTF matrices are column-major: the translation is elements 12 to 14.
    assert 30.0 in {node["matrix"][12] for node in local_gltf["nodes"]}
    assert {node["matrix"][12] for node in world_gltf["nodes"]} == {0.0}
    assert max(a["max"][0] for a in world_gltf["accessors"] if len(a.get("max", [])) == 3) == 35.0


async def test_slab_converts_to_step_with_exact_shapes(client, samples, data_dir):
    body = {"input_filename": "uploads/slab-standard-case.ifc", "output_filename": "output/ifcconvert/slab.stp"}
    response = await client.post("/ifcconvert/ifcconvert", json=body)
    assert response.status_code == 200, response.text
    text = (data_dir / "output/ifcconvert/slab.stp").read_text()
    assert text.startswith("ISO-10303-21;") and "ADVANCED_FACE" in text


async def test_unknown_class_and_unsupported_format_are_refused(client):
    body = {"input_filename": "uploads/walls.ifc", "output_filename": "output/ifcconvert/x.glb", "include": ["IfcWal"]}
    response = await client.post("/ifcconvert/ifcconvert", json=body)
    assert response.status_code == 422
    assert "'IfcWal' is not an IFC class" in response.json()["error"]["message"]
    body = {"input_filename": "uploads/walls.ifc", "output_filename": "output/ifcconvert/x.gltf"}
    response = await client.post("/ifcconvert/ifcconvert", json=body)
    assert response.status_code == 422
    assert "unsupported format 'gltf'" in response.json()["error"]["message"]
