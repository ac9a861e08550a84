"""Models, IDS files and small helpers the IFC service tests share (imported by conftest and tests)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.api.aggregate
import ifcopenshell.api.context
import ifcopenshell.api.geometry
import ifcopenshell.api.project
import ifcopenshell.api.pset
import ifcopenshell.api.root
import ifcopenshell.api.spatial
import ifcopenshell.api.unit
import numpy as np

REPO = Path(__file__).resolve().parents[2]
# shared/ sits beside the repository, here and in CI's fresh clone alike.
SAMPLES = REPO.parent / "shared" / "samples"
NDJSON_HEADERS = {"Accept": "application/x-ndjson, application/json"}
CONCURRENCY = 2

Wall = tuple[float, float, bool, float, dict[str, Any] | None]
# Wall name -> (x, y, rotated by 90 degrees, length, Pset_WallCommon properties). A and B cross; C and D
# stand 5 m apart from each other and far from A and B; only A carries the FireRating the IDS requires.
WALLS: dict[str, Wall] = {
    "A": (0.0, 0.0, False, 5.0, {"FireRating": "REI60"}),
    "B": (2.0, -1.0, True, 5.0, None),
    "C": (20.0, 0.0, False, 5.0, None),
    "D": (30.0, 0.0, False, 5.0, None),
}
GRID = 40  # walls each way in grid.ifc: GRID * GRID crossings

FIRE_RATING_IDS = """<?xml version="1.0" encoding="UTF-8"?>
<ids xmlns="http://standards.buildingsmart.org/IDS" xmlns:xs="http://www.w3.org/2001/XMLSchema"
     xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
     xsi:schemaLocation="http://standards.buildingsmart.org/IDS http://standards.buildingsmart.org/IDS/1.0/ids.xsd">
  <info><title>Walls need a fire rating</title></info>
  <specifications>
    <specification name="Wall fire rating" ifcVersion="IFC4">
      <applicability minOccurs="0" maxOccurs="unbounded">
        <entity><name><simpleValue>IFCWALL</simpleValue></name></entity>
      </applicability>
      <requirements>
        <property dataType="IFCLABEL">
          <propertySet><simpleValue>Pset_WallCommon</simpleValue></propertySet>
          <baseName><simpleValue>FireRating</simpleValue></baseName>
        </property>
      </requirements>
    </specification>
  </specifications>
</ids>
"""


def build_walls(walls: dict[str, Wall]) -> ifcopenshell.file:
    """An IFC4 model with one storey and a 3 m high, 0.2 m thick wall per entry."""
    model = ifcopenshell.api.project.create_file(version="IFC4")
    project = ifcopenshell.api.root.create_entity(model, ifc_class="IfcProject", name="Walls")
    ifcopenshell.api.unit.assign_unit(model)
    root_context = ifcopenshell.api.context.add_context(model, context_type="Model")
    body = ifcopenshell.api.context.add_context(
        model, context_type="Model", context_identifier="Body", target_view="MODEL_VIEW", parent=root_context
    )
    site = ifcopenshell.api.root.create_entity(model, ifc_class="IfcSite", name="Site")
    building = ifcopenshell.api.root.create_entity(model, ifc_class="IfcBuilding", name="Building")
    storey = ifcopenshell.api.root.create_entity(model, ifc_class="IfcBuildingStorey", name="Ground floor")
    ifcopenshell.api.aggregate.assign_object(model, relating_object=project, products=[site])
    ifcopenshell.api.aggregate.assign_object(model, relating_object=site, products=[building])
    ifcopenshell.api.aggregate.assign_object(model, relating_object=building, products=[storey])
    for name, (x, y, rotated, length, properties) in walls.items():
        wall = ifcopenshell.api.root.create_entity(model, ifc_class="IfcWall", name=name)
        matrix = np.eye(4)
        if rotated:
            matrix[:2, :2] = [[0.0, -1.0], [1.0, 0.0]]
        matrix[0, 3], matrix[1, 3] = x, y
        ifcopenshell.api.geometry.edit_object_placement(model, product=wall, matrix=matrix)
        representation = ifcopenshell.api.geometry.add_wall_representation(
            model, context=body, length=length, height=3.0, thickness=0.2
        )
        ifcopenshell.api.geometry.assign_representation(model, product=wall, representation=representation)
        ifcopenshell.api.spatial.assign_container(model, relating_structure=storey, products=[wall])
        if properties:
            pset = ifcopenshell.api.pset.add_pset(model, product=wall, name="Pset_WallCommon")
            ifcopenshell.api.pset.edit_pset(model, pset=pset, properties=properties)
    return model


def grid_walls(count: int) -> dict[str, Wall]:
    """``count`` walls along x crossed by ``count`` walls along y, 0.1 m apart: count * count clashes."""
    length = 0.3 * count + 2.0
    walls: dict[str, Wall] = {}
    for i in range(count):
        walls[f"X{i}"] = (-1.0, i * 0.3, False, length, None)
        walls[f"Y{i}"] = (i * 0.3 + 0.2, -1.0, True, length, None)
    return walls


def guid_of(model_path: Path, name: str) -> str:
    model = ifcopenshell.open(str(model_path))
    return str(next(w.GlobalId for w in model.by_type("IfcWall") if w.Name == name))


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
