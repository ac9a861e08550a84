"""IFC to JSON: every object and type with its attributes, property sets and quantity sets.

Geometry and other resource entities are left out: they are what makes a model large, and a JSON
reader wants the building's objects. References to other entities become ``{"ref": id}`` (plus the
GlobalId when the target has one). The file is written entity by entity, never held whole.
"""

from __future__ import annotations

import json
from typing import IO, Any

import ifcopenshell
import ifcopenshell.util.element

from contracts.requests import IFC2JSONRequest
from ifcservices.context import TaskContext
from ifcservices.ifcfiles import open_ifc
from ifcservices.limits import is_out_of_memory_error
from ifcservices.skipped import Skipped, error_text, fail_if_nothing_done


def _class(entity: Any) -> str:
    return str(entity.is_a())


def _value(value: Any) -> Any:
    if isinstance(value, ifcopenshell.entity_instance):
        if value.id() == 0:  # a typed value in a SELECT, e.g. IfcLabel('x')
            return {"type": _class(value), "value": _value(value.wrappedValue)}
        ref: dict[str, Any] = {"ref": value.id(), "type": _class(value)}
        if hasattr(value, "GlobalId"):
            ref["GlobalId"] = value.GlobalId
        return ref
    if isinstance(value, tuple | list):
        return [_value(item) for item in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)
    return value


def _sets(element: ifcopenshell.entity_instance, *, qtos: bool) -> dict[str, dict[str, Any]]:
    found = ifcopenshell.util.element.get_psets(element, qtos_only=qtos, psets_only=not qtos)
    return {name: {k: _value(v) for k, v in props.items() if k != "id"} for name, props in found.items()}


def entity_json(element: ifcopenshell.entity_instance) -> dict[str, Any]:
    """One object or type: id, class, direct attributes, property and quantity sets."""
    data: dict[str, Any] = {"id": element.id(), "type": _class(element)}
    data["attributes"] = {
        name: _value(value) for name, value in element.get_info(recursive=False).items() if name not in ("id", "type")
    }
    data["property_sets"] = _sets(element, qtos=False)
    data["quantity_sets"] = _sets(element, qtos=True)
    return data


def _write(
    handle: IO[str], model: ifcopenshell.file, elements: list[ifcopenshell.entity_instance], ctx: TaskContext
) -> Skipped:
    """The document, entity by entity; an entity whose attributes or sets cannot be read (a property of
    the wrong type, say) is left out and reported. The counts come last: they are known only then."""
    skipped = Skipped()
    handle.write(json.dumps({"schema": model.schema_identifier})[:-1] + ', "entities": [\n')
    written = 0
    for i, element in enumerate(elements):
        try:
            line = json.dumps(entity_json(element), ensure_ascii=False, default=str)
        except Exception as exc:  # whatever a malformed entity makes ifcopenshell raise
            if is_out_of_memory_error(exc):
                raise
            skipped.add(element, error_text(exc))
            continue
        handle.write(",\n" if written else "")
        handle.write(line)
        written += 1
        if i % 200 == 0:
            ctx.progress(20 + 75 * i / len(elements), "writing entities")
    tail = {"entity_count": written, "skipped_elements": skipped.as_result()}
    handle.write("\n], " + json.dumps(tail)[1:] + "\n")
    return skipped


def run(request: IFC2JSONRequest, ctx: TaskContext) -> dict[str, Any]:
    """Write the model's objects and types as JSON."""
    ctx.progress(1, "opening model")
    model = open_ifc(ctx.input(request.filename), request.filename)
    elements = sorted(model.by_type("IfcObjectDefinition"), key=lambda e: e.id())
    with ctx.output(request.output_filename) as output, output.open("w", encoding="utf-8") as handle:
        skipped = _write(handle, model, elements, ctx)
    fail_if_nothing_done(f"ifc2json of {request.filename}", len(elements), skipped)
    return {
        "output_files": ctx.output_files,
        "schema": model.schema_identifier,
        "entity_count": len(elements) - skipped.count,
        "skipped_elements": skipped.as_result(),
    }
