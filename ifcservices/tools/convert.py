"""IFC to glTF binary, OBJ, COLLADA, STEP, IGES, SVG or Turtle with the ifcopenshell.geom serializers,
as IfcConvert does: one geometry iterator feeding one serializer chosen by the output's extension."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

import ifcopenshell
import ifcopenshell.geom
import ifcopenshell.ifcopenshell_wrapper as wrapper

from contracts.requests import IfcConvertRequest
from ifcservices.context import TaskContext
from ifcservices.errors import BadInput
from ifcservices.ifcfiles import check_classes, open_ifc, parser_log

# Output extension -> serializer name in ifcopenshell.geom.serializers (0.9 ships these plug-ins).
SERIALIZERS = {
    "glb": "glb",
    "obj": "obj",
    "dae": "dae",
    "stp": "stp",
    "step": "stp",
    "igs": "igs",
    "iges": "igs",
    "svg": "svg",
    "ttl": "ttl",
}
# IfcConvert's default: spaces and openings are not part of the visible model.
DEFAULT_EXCLUDE = ["IfcSpace", "IfcOpeningElement"]


def geometry_settings(request: IfcConvertRequest) -> tuple[ifcopenshell.geom.settings, list[str]]:
    """The iterator settings for the request's options, and the options 0.9 no longer has."""
    if not request.plan and not request.model:
        raise BadInput("nothing to convert: 'plan' (curves) and 'model' (surfaces and solids) are both false")
    settings = ifcopenshell.geom.settings()  # type: ignore[no-untyped-call]
    if request.plan and request.model:
        settings.set("dimensionality", wrapper.CURVES_SURFACES_AND_SOLIDS)
    elif request.plan:
        settings.set("dimensionality", wrapper.CURVES)
    settings.set("weld-vertices", request.weld_vertices)
    settings.set("use-world-coords", request.use_world_coords)
    settings.set("convert-back-units", request.convert_back_units)
    settings.set("disable-opening-subtractions", request.disable_opening_subtractions)
    # 0.8 replaced sewing shells by reorienting them, which is what sewing was wanted for.
    settings.set("reorient-shells", request.sew_shells)
    if request.bounds:
        settings.set("bounds", request.bounds)
    ignored = ["merge_boolean_operands"] if request.merge_boolean_operands else []
    return settings, ignored


def _serializer(output: Path, settings: ifcopenshell.geom.settings) -> Any:
    name = SERIALIZERS[output.suffix.lower().lstrip(".")]
    factory = getattr(ifcopenshell.geom.serializers, name)
    if name == "obj":
        return factory(os.fspath(output), os.fspath(output.with_suffix(".mtl")), settings)
    return factory(os.fspath(output), settings)


def _filters(model: ifcopenshell.file, request: IfcConvertRequest) -> dict[str, list[str]]:
    if request.include and request.exclude:
        raise BadInput("include and exclude cannot both be given")
    if request.include:
        check_classes(model, request.include, "include")
        return {"include": request.include}
    exclude = DEFAULT_EXCLUDE if request.exclude is None else request.exclude
    check_classes(model, exclude, "exclude")
    return {"exclude": exclude} if exclude else {}


def _write_log(ctx: TaskContext, relative: str, lines: list[str]) -> None:
    with ctx.output(relative) as path:
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run(request: IfcConvertRequest, ctx: TaskContext) -> dict[str, Any]:
    """Convert ``request.input_filename``; the format is the output file's extension."""
    suffix = PurePosixPath(request.output_filename).suffix.lower().lstrip(".")
    if suffix not in SERIALIZERS:
        raise BadInput(f"output_filename: ifcopenshell 0.9 has no serializer for .{suffix}")
    ctx.progress(1, "opening model")
    model = open_ifc(ctx.input(request.input_filename), request.input_filename)
    settings, ignored = geometry_settings(request)
    filters = _filters(model, request)
    parser_log()  # start the conversion log afresh

    count = 0
    with ctx.output(request.output_filename) as output:
        serializer = _serializer(output, settings)
        if not serializer.isTesselated():
            # STEP and IGES take the kernel's exact shapes, not triangles (IfcConvert does the same).
            settings.set("iterator-output", wrapper.NATIVE)
        serializer.setFile(model)
        serializer.writeHeader()
        ctx.progress(5, "creating geometry")
        iterator = ifcopenshell.geom.iterator(settings, model, ctx.threads, **filters)  # type: ignore[arg-type]
        if iterator.initialize():
            while True:
                serializer.write(iterator.get())  # type: ignore[no-untyped-call]
                count += 1
                ctx.progress(5 + 0.9 * iterator.progress(), "creating geometry")
                if not iterator.next():
                    break
        ctx.progress(96, "writing output")
        serializer.finalize()
        del serializer  # closes the file before it is renamed into place
        size = output.stat().st_size

    if request.log_file:
        lines = [f"converted {count} elements of {request.input_filename} to {request.output_filename}"]
        if ignored:
            lines.append(f"ignored (not in ifcopenshell 0.9): {', '.join(ignored)}")
        log_text = parser_log().strip()
        lines.extend(log_text.splitlines() if request.verbose else [])
        _write_log(ctx, request.log_file, lines)

    return {
        "output_files": ctx.output_files,
        "format": suffix,
        "size_bytes": size,
        "element_count": count,
        "ignored_options": ignored,
    }
