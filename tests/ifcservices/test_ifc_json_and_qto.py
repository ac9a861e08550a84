"""ifc2json (objects with attributes and property sets) and ifc5d quantity take-off."""

from __future__ import annotations

import json

import ifcopenshell
import ifcopenshell.util.element
import ifcopenshell.util.unit


async def test_json_lists_objects_with_attributes_and_property_sets(client, data_dir):
    body = {"filename": "uploads/walls.ifc", "output_filename": "output/ifc2json/walls.json"}
    response = await client.post("/ifc2json/ifc2json", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    document = json.loads((data_dir / "output/ifc2json/walls.json").read_text())
    assert document["schema"] == result["schema"] == "IFC4"
    # project, site, building, storey and four walls
    assert result["entity_count"] == len(document["entities"]) == 8
    wall_a = next(e for e in document["entities"] if e["attributes"].get("Name") == "A")
    assert wall_a["type"] == "IfcWall"
    assert wall_a["property_sets"]["Pset_WallCommon"]["FireRating"] == "REI60"
    assert set(wall_a["attributes"]["ObjectPlacement"]) >= {"ref", "type"}


async def test_sample_house_to_json_keeps_every_object(client, samples, data_dir):
    body = {"filename": "uploads/AC20-FZK-Haus.ifc", "output_filename": "output/ifc2json/house.json"}
    result = (await client.post("/ifc2json/ifc2json", json=body)).json()
    model = ifcopenshell.open(str(data_dir / "uploads/AC20-FZK-Haus.ifc"))
    assert result["entity_count"] == len(model.by_type("IfcObjectDefinition"))
    document = json.loads((data_dir / "output/ifc2json/house.json").read_text())
    doors = [e for e in document["entities"] if e["type"] == "IfcDoor"]
    assert len(doors) == 5 and all(d["attributes"]["GlobalId"] for d in doors)


async def test_quantities_of_built_walls_are_written_into_a_new_ifc(client, data_dir):
    body = {"input_file": "uploads/walls.ifc", "output_file": "output/ifc5d/walls_qto.ifc"}
    response = await client.post("/ifc5d/calculate-qtos", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["output_files"] == ["output/ifc5d/walls_qto.ifc"]
    assert result["quantity_sets"]["Qto_WallBaseQuantities"]["elements"] == 4
    model = ifcopenshell.open(str(data_dir / "output/ifc5d/walls_qto.ifc"))
    scale = ifcopenshell.util.unit.calculate_unit_scale(model)  # project lengths in millimetres
    for wall in model.by_type("IfcWall"):
        quantities = ifcopenshell.util.element.get_pset(wall, "Qto_WallBaseQuantities")
        assert round(quantities["Length"] * scale, 6) == 5.0
        assert round(quantities["Height"] * scale, 6) == 3.0
        assert round(quantities["Width"] * scale, 6) == 0.2
        assert abs(quantities["NetVolume"] - 3.0) < 1e-6  # m3: 5 x 3 x 0.2


async def test_sample_slab_gets_its_base_quantities(client, samples, data_dir):
    response = await client.post(
        "/ifc5d/calculate-qtos",
        json={"input_file": "uploads/slab-standard-case.ifc", "output_file": "output/ifc5d/slab_qto.ifc"},
    )
    assert response.status_code == 200, response.text
    assert "Qto_SlabBaseQuantities" in response.json()["quantity_sets"]
    model = ifcopenshell.open(str(data_dir / "output/ifc5d/slab_qto.ifc"))
    [slab] = model.by_type("IfcSlab")
    quantities = ifcopenshell.util.element.get_pset(slab, "Qto_SlabBaseQuantities")
    assert quantities["NetVolume"] > 1.0 and quantities["GrossArea"] > 6.0
    source = ifcopenshell.open(str(data_dir / "uploads/slab-standard-case.ifc"))
    assert ifcopenshell.util.element.get_pset(source.by_type("IfcSlab")[0], "Qto_SlabBaseQuantities") is None
