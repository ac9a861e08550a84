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
from ifcservices.limits import is_out_of_memory_error
from ifcservices.skipped import Skipped, error_text, fail_if_nothing_done


def select(model: ifcopenshell.file, query: str) -> list[ifcopenshell.entity_instance]:
    """Elements matching an ifcopenshell selector query; a query that does not parse is a 422."""
    try:
        return list(ifcopenshell.util.selector.filter_elements(model, query))
    except Exception as exc:  # the selector grammar (lark) raises its own error types
        raise BadInput(f"query {query!r} is not a valid selector: {' '.join(str(exc).split())}") from None


def readable(
    elements: list[ifcopenshell.entity_instance], attributes: list[str], skipped: Skipped
) -> list[ifcopenshell.entity_instance]:
    """The elements whose every asked value can be read; ifccsv stops at the first that cannot (a
    property of the wrong type, say): those are skipped with the error, the others exported."""
    kept = []
    for element in elements:
        try:
            for attribute in attributes:
                ifcopenshell.util.selector.get_element_value(element, attribute)
        except Exception as exc:  # whatever a malformed element makes the selector raise
            if is_out_of_memory_error(exc):
                raise
            skipped.add(element, error_text(exc))
        else:
            kept.append(element)
    return kept


def _columns(items: list[Any] | None) -> list[dict[str, Any]] | None:
    # ifccsv reads plain dicts ({"name": ..., "type": ...}); the request has checked each one.
    return [item.model_dump() for item in items] if items else None


def run(request: IfcCsvRequest, ctx: TaskContext) -> dict[str, Any]:
    """Export the attributes of the elements the query selects (GlobalId first unless
    ``include_global_id`` is false), grouped, summarised, sorted and formatted as ifccsv does."""
    ctx.progress(1, "opening model")
    model = open_ifc(ctx.input(request.filename), request.filename)
    ctx.progress(30, "selecting elements")
    selected = select(model, request.query)
    exporter = ifccsv.IfcCsv()
    attributes = list(request.attributes)  # ifccsv inserts GlobalId into the list it is given
    # GlobalId asked for as an attribute is not added a second time (as the RQ system's worker did).
    include_global_id = request.include_global_id and "GlobalId" not in attributes
    skipped = Skipped()
    elements = readable(selected, attributes, skipped)
    fail_if_nothing_done(f"ifccsv of {request.filename}", len(selected), skipped)
    ctx.progress(50, f"exporting {len(elements)} elements")
    with ctx.output(request.output_filename) as output:
        try:
            exporter.export(
                model,
                elements,
                attributes,
                headers=list(request.headers) + [None] * (len(attributes) - len(request.headers))
                if request.headers is not None else None,
                output=os.fspath(output),
                format=request.format,
                include_global_id=include_global_id,
                delimiter=request.delimiter,
                null=request.null_value,
                groups=_columns(request.groups),
                sort=_columns(request.sort),
                summaries=_columns(request.summaries),
                formatting=_columns(request.formatting),
            )
        except Exception as exc:  # the format grammar (lark) raises its own error types
            shaping = [n for n in ("groups", "sort", "summaries", "formatting") if getattr(request, n)]
            if not shaping:
                raise
            detail = " ".join(str(exc).split())
            raise BadInput(f"{', '.join(shaping)}: ifccsv could not apply them to these values: {detail}") from None
    return {
        "output_files": ctx.output_files,
        "format": request.format,
        "rows": len(list(exporter.results)),
        "headers": list(exporter.headers),
        "skipped_elements": skipped.as_result(),
    }
