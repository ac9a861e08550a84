"""Small hostile models, made with ifcopenshell: a few KB that explode into memory or CPU on processing.

- ``mapped_item_bomb``: representation maps of ``fan_out`` mapped items of the map below, ``depth``
  levels deep: one element of ``fan_out ** depth`` spheres (10 ** 8 from a 13 KB file). Each sphere
  tessellates to many triangles, so the child's memory grows fast (about 75 MB/s on one core).
- ``boolean_dag``: boolean results whose two operands are the same result one level down: ``depth``
  levels evaluate the box ``2 ** depth`` times unless the kernel shares operands.
"""

from __future__ import annotations

from typing import Any

import ifcopenshell
import ifcopenshell.api.aggregate
import ifcopenshell.api.context
import ifcopenshell.api.geometry
import ifcopenshell.api.project
import ifcopenshell.api.root
import ifcopenshell.api.spatial
import ifcopenshell.api.unit


def _skeleton() -> tuple[ifcopenshell.file, Any, Any]:
    model = ifcopenshell.api.project.create_file(version="IFC4")
    project = ifcopenshell.api.root.create_entity(model, ifc_class="IfcProject", name="Hostile")
    ifcopenshell.api.unit.assign_unit(model)
    root = ifcopenshell.api.context.add_context(model, context_type="Model")
    body = ifcopenshell.api.context.add_context(
        model, context_type="Model", context_identifier="Body", target_view="MODEL_VIEW", parent=root
    )
    site = ifcopenshell.api.root.create_entity(model, ifc_class="IfcSite", name="Site")
    storey = ifcopenshell.api.root.create_entity(model, ifc_class="IfcBuildingStorey", name="Storey")
    ifcopenshell.api.aggregate.assign_object(model, relating_object=project, products=[site])
    ifcopenshell.api.aggregate.assign_object(model, relating_object=site, products=[storey])
    return model, body, storey


def _point(model: ifcopenshell.file, x: float = 0.0, y: float = 0.0, z: float = 0.0) -> Any:
    return model.createIfcCartesianPoint((x, y, z))


def _box(model: ifcopenshell.file, size: float = 0.1) -> Any:
    profile = model.createIfcRectangleProfileDef("AREA", None, None, size, size)
    placement = model.createIfcAxis2Placement3D(_point(model))
    direction = model.createIfcDirection((0.0, 0.0, 1.0))
    return model.createIfcExtrudedAreaSolid(profile, placement, direction, size)


def _proxy(model: ifcopenshell.file, body: Any, storey: Any, item: Any, kind: str) -> None:
    proxy = ifcopenshell.api.root.create_entity(model, ifc_class="IfcBuildingElementProxy", name="Bomb")
    ifcopenshell.api.geometry.edit_object_placement(model, product=proxy)
    representation = model.createIfcShapeRepresentation(body, "Body", kind, [item])
    proxy.Representation = model.createIfcProductDefinitionShape(None, None, [representation])
    ifcopenshell.api.spatial.assign_container(model, relating_structure=storey, products=[proxy])


def mapped_item_bomb(depth: int = 8, fan_out: int = 10) -> ifcopenshell.file:
    model, body, storey = _skeleton()
    origin = model.createIfcAxis2Placement3D(_point(model))
    items: list[Any] = [model.createIfcSphere(origin, 0.1)]
    kind = "CSG"
    for level in range(depth):
        representation = model.createIfcShapeRepresentation(body, "Body", kind, items)
        mapping = model.createIfcRepresentationMap(origin, representation)
        step = 0.2 * fan_out**level
        items = [
            model.createIfcMappedItem(
                mapping, model.createIfcCartesianTransformationOperator3D(None, None, _point(model, step * i), None)
            )
            for i in range(fan_out)
        ]
        kind = "MappedRepresentation"
    _proxy(model, body, storey, items[0], kind)
    return model


def boolean_dag(depth: int = 40) -> ifcopenshell.file:
    model, body, storey = _skeleton()
    result = _box(model)
    for _ in range(depth):
        result = model.createIfcBooleanResult("UNION", result, result)
    _proxy(model, body, storey, result, "CSG")
    return model
