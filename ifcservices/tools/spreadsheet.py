"""IFC elements to a CSV, XLSX or ODS table with ifccsv: one row per element matched by the query."""

from __future__ import annotations

import os
from typing import Any

import ifccsv
import ifcopenshell.util.selector

from contracts.requests import IfcCsvRequest
from ifcservices.context import TaskContext
from ifcservices.errors import BadInput
from ifcservices.ifcfiles import open_ifc


def select(model: ifcopenshell.file, query: str) -> list[ifcopenshell.entity_instance]:
    """Elements matching an ifcopenshell selector query; a query that does not parse is a 422."""
    try:
        return list(ifcopenshell.util.selector.filter_elements(model, query))
    except Exception as exc:  # the selector grammar (lark) raises its own error types
        raise BadInput(f"query {query!r} is not a valid selector: {' '.join(str(exc).split())}") from None


def run(request: IfcCsvRequest, ctx: TaskContext) -> dict[str, Any]:
    """Export the attributes of the elements the query selects, GlobalId first."""
    ctx.progress(1, "opening model")
    model = open_ifc(ctx.input(request.filename), request.filename)
    ctx.progress(30, "selecting elements")
    elements = select(model, request.query)
    exporter = ifccsv.IfcCsv()
    ctx.progress(50, f"exporting {len(elements)} elements")
    with ctx.output(request.output_filename) as output:
        exporter.export(
            model,
            elements,
            list(request.attributes),  # ifccsv inserts GlobalId into the list it is given
            output=os.fspath(output),
            format=request.format,
            delimiter=request.delimiter,
            null=request.null_value,
        )
    return {
        "output_files": ctx.output_files,
        "format": request.format,
        "rows": len(list(exporter.results)),
        "headers": list(exporter.headers),
    }
