"""Models with a few broken elements, made with ifcopenshell.api and then damaged as real exports are.

- ``cut_away``: the body of each named wall is the wall minus itself (a wall its openings cut away
  entirely): the geometry kernel yields an empty shape, on which ifc5d fails with numpy's
  "zero-size array to reduction operation maximum" (as on two walls of a 27 MB Revit model).
- ``flat``: each named wall is extruded 0 m: the kernel refuses the shape.
- ``bad_property``: the FireRating of each named wall holds a point instead of a label (schema
  invalid): reading its property sets raises.
"""

from __future__ import annotations

from typing import Any

import ifcopenshell
from ifcmodels import WALLS, build_walls


def _walls(model: ifcopenshell.file) -> dict[str, Any]:
    return {wall.Name: wall for wall in model.by_type("IfcWall")}


def broken_walls(
    cut_away: tuple[str, ...] = (), flat: tuple[str, ...] = (), bad_property: tuple[str, ...] = ()
) -> ifcopenshell.file:
    walls = {name: (*wall[:4], wall[4] or {"FireRating": "REI30"}) for name, wall in WALLS.items()}
    model = build_walls(walls)
    by_name = _walls(model)
    for name in cut_away:
        for representation in by_name[name].Representation.Representations:
            solid = representation.Items[0]
            representation.Items = [model.createIfcBooleanResult("DIFFERENCE", solid, solid)]
            representation.RepresentationType = "CSG"
    for name in flat:
        for representation in by_name[name].Representation.Representations:
            representation.Items[0].Depth = 0.0
    for name in bad_property:
        pset = by_name[name].IsDefinedBy[0].RelatingPropertyDefinition
        pset.HasProperties[0].NominalValue = model.createIfcCartesianPoint((0.0, 0.0, 0.0))
    return model

