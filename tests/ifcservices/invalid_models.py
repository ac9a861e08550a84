"""Models broken on purpose in known ways, for the /ifcvalidate tests (a helper module: no tests here).

Each break is made in the written STEP text of an otherwise valid model built with ifcopenshell.api
(ifcopenshell refuses to build most of them itself), and described by the entity, attribute and line
the validator must name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import ifcopenshell
import ifcopenshell.api.aggregate
import ifcopenshell.api.context
import ifcopenshell.api.project
import ifcopenshell.api.root
import ifcopenshell.api.spatial
import ifcopenshell.api.unit
import ifcopenshell.guid


@dataclass(frozen=True)
class Break:
    check: str  # the check the validator reports
    entity_id: int
    attribute: str | None
    line: int
    global_id: str | None
    rule: str | None = None
    # Another entity the validator may name instead, with its line (of two sharing a GlobalId, the one it
    # meets second, in ifcopenshell's order of instances, not the file's).
    instead: tuple[int, int] | None = None


def _valid_model() -> tuple[ifcopenshell.file, list[ifcopenshell.entity_instance], ifcopenshell.entity_instance]:
    model = ifcopenshell.api.project.create_file(version="IFC4")
    project = ifcopenshell.api.root.create_entity(model, ifc_class="IfcProject", name="Broken on purpose")
    ifcopenshell.api.unit.assign_unit(model)
    ifcopenshell.api.context.add_context(model, context_type="Model")
    site = ifcopenshell.api.root.create_entity(model, ifc_class="IfcSite", name="Site")
    storey = ifcopenshell.api.root.create_entity(model, ifc_class="IfcBuildingStorey", name="Ground floor")
    ifcopenshell.api.aggregate.assign_object(model, products=[site], relating_object=project)
    ifcopenshell.api.aggregate.assign_object(model, products=[storey], relating_object=site)
    walls = []
    for name in "ABCDEFG":
        wall = ifcopenshell.api.root.create_entity(model, ifc_class="IfcWall", name=f"Wall {name}")
        wall.PredefinedType = "STANDARD"
        walls.append(wall)
    ifcopenshell.api.spatial.assign_container(model, products=walls, relating_structure=storey)
    return model, walls, storey


def _line_of(text: str, entity_id: int) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith(f"#{entity_id}="):
            return number
    raise AssertionError(f"#{entity_id} is not in the file")


def _edit(text: str, entity_id: int, old: str, new: str) -> str:
    pattern = re.compile(rf"^#{entity_id}=.*$", re.M)
    line = pattern.search(text)
    assert line is not None and old in line[0], (entity_id, old)
    return text[: line.start()] + line[0].replace(old, new, 1) + text[line.end() :]


def write_valid(path: Path) -> None:
    """The model before any break: it passes every check."""
    model, _, _ = _valid_model()
    path.parent.mkdir(parents=True, exist_ok=True)
    model.write(str(path))


def write_broken(path: Path) -> list[Break]:
    """Write the model with one break of each kind; what the validator must find."""
    model, walls, storey = _valid_model()
    point = model.createIfcCartesianPoint((1.0, 2.0, 3.0))
    direction = model.createIfcDirection((1.0, 0.0, 0.0))
    second = model.createIfcRelContainedInSpatialStructure(
        ifcopenshell.guid.new(), None, None, None, [walls[3]], storey)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.write(str(path))
    text = path.read_text()
    a, b, c, _d, e, f, _g = walls  # G: a wall with nothing wrong
    text = _edit(text, a.id(), "'Wall A'", "5")  # Name: an INTEGER where IfcLabel (STRING) belongs
    text = _edit(text, b.id(), ".STANDARD.", ".FOO.")  # no literal of IfcWallTypeEnum
    text = _edit(text, c.id(), ".STANDARD.", ".USERDEFINED.")  # USERDEFINED without an ObjectType
    text = _edit(text, point.id(), "(1.,2.,3.)", "(1.,2.,3.,4.)")  # LIST [1:3]: four coordinates
    text = _edit(text, direction.id(), "(1.,0.,0.)", "(0.,0.,0.)")  # a direction of length zero
    text = _edit(text, e.id(), e.GlobalId, f.GlobalId)  # two walls, one GlobalId
    rel = next(r for r in model.by_type("IfcRelContainedInSpatialStructure") if r != second)
    text = _edit(text, rel.id(), f"#{storey.id()});", "$);")  # RelatingStructure left unset
    path.write_text(text)
    wall = {w.id(): w.GlobalId for w in walls}
    return [
        Break("type", a.id(), "Name", _line_of(text, a.id()), wall[a.id()]),
        Break("enumeration", b.id(), "PredefinedType", _line_of(text, b.id()), wall[b.id()]),
        Break("rule", c.id(), None, _line_of(text, c.id()), wall[c.id()], rule="IfcWall.CorrectPredefinedType"),
        Break("cardinality", point.id(), "Coordinates", _line_of(text, point.id()), None),
        Break("rule", direction.id(), None, _line_of(text, direction.id()), None,
              rule="IfcDirection.MagnitudeGreaterZero"),
        Break("unique", f.id(), "GlobalId", _line_of(text, f.id()), f.GlobalId, rule="IfcRoot.UR1",
              instead=(e.id(), _line_of(text, e.id()))),
        Break("required", rel.id(), "RelatingStructure", _line_of(text, rel.id()), rel.GlobalId),
        Break("inverse", walls[3].id(), "ContainedInStructure", _line_of(text, walls[3].id()), walls[3].GlobalId),
    ]


def write_syntax_error(source: Path, path: Path, line: int) -> str:
    """``source`` with line ``line`` (an entity instance) left without its closing bracket."""
    lines = source.read_text().splitlines()
    assert lines[line - 1].startswith("#") and lines[line - 1].endswith(");"), lines[line - 1]
    lines[line - 1] = lines[line - 1][:-2] + ";"
    path.write_text("\n".join(lines) + "\n")
    return lines[line - 1]
