"""ifcdiff: added, deleted and changed elements between two versions of a model."""

from __future__ import annotations

import json

import ifcopenshell
import ifcopenshell.api.pset
import ifcopenshell.api.root
import ifcopenshell.util.element
from ifcmodels import WALLS, build_walls, guid_of


async def test_added_deleted_and_changed_walls_are_counted(client, data_dir):
    new = ifcopenshell.open(str(data_dir / "uploads/walls.ifc"))
    walls = {w.Name: w for w in new.by_type("IfcWall")}
    walls["A"].Name = "A renamed"
    ifcopenshell.api.root.remove_product(new, product=walls["D"])
    extra = build_walls({"E": WALLS["C"]})  # a new wall, merged in with its own GlobalId
    new.add(extra.by_type("IfcWall")[0])
    new.write(str(data_dir / "uploads/walls_v2.ifc"))

    body = {
        "old_file": "uploads/walls.ifc",
        "new_file": "uploads/walls_v2.ifc",
        "output_file": "output/ifcdiff/v2.json",
    }
    response = await client.post("/ifcdiff/ifcdiff", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    old = data_dir / "uploads/walls.ifc"
    assert (result["added_count"], result["deleted_count"], result["changed_count"]) == (1, 1, 1)
    assert result["deleted"] == [guid_of(old, "D")]
    assert result["added"] == [guid_of(data_dir / "uploads/walls_v2.ifc", "E")]
    assert result["changed"] == {guid_of(old, "A"): {"attributes_changed": True}}
    written = json.loads((data_dir / "output/ifcdiff/v2.json").read_text())
    assert written["deleted"] == result["deleted"] and written["changed"] == result["changed"]


async def test_property_changes_are_reported_in_detail(client, data_dir):
    new = ifcopenshell.open(str(data_dir / "uploads/walls.ifc"))
    wall = next(w for w in new.by_type("IfcWall") if w.Name == "A")
    pset = new.by_id(ifcopenshell.util.element.get_pset(wall, "Pset_WallCommon")["id"])
    ifcopenshell.api.pset.edit_pset(new, pset=pset, properties={"FireRating": "REI90"})
    new.write(str(data_dir / "uploads/walls_rei90.ifc"))
    body = {
        "old_file": "uploads/walls.ifc",
        "new_file": "uploads/walls_rei90.ifc",
        "output_file": "output/ifcdiff/rei90.json",
        "relationships": ["property"],
        "is_shallow": False,
    }
    result = (await client.post("/ifcdiff/ifcdiff", json=body)).json()
    [change] = result["changed"].values()
    values = change["properties_changed"]["values_changed"]
    assert values == {"root['Pset_WallCommon']['FireRating']": {"new_value": "REI90", "old_value": "REI60"}}


async def test_sample_house_diff_finds_a_removed_door(client, samples, data_dir):
    new = ifcopenshell.open(str(data_dir / "uploads/AC20-FZK-Haus.ifc"))
    door = new.by_type("IfcDoor")[0]
    door_id = door.GlobalId
    ifcopenshell.api.root.remove_product(new, product=door)
    new.write(str(data_dir / "uploads/house_without_door.ifc"))
    body = {
        "old_file": "uploads/AC20-FZK-Haus.ifc",
        "new_file": "uploads/house_without_door.ifc",
        "output_file": "output/ifcdiff/house.json",
        "relationships": ["attributes"],
    }
    result = (await client.post("/ifcdiff/ifcdiff", json=body)).json()
    assert (result["deleted"], result["added_count"]) == ([door_id], 0)


async def test_unknown_relationship_is_a_422(client):
    body = {"old_file": "uploads/walls.ifc", "new_file": "uploads/walls.ifc", "relationships": ["colour"]}
    response = await client.post("/ifcdiff/ifcdiff", json=body)
    assert response.status_code == 422
    assert "unknown ['colour']" in response.json()["error"]["message"]
