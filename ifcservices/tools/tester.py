"""IDS validation with ifctester: a JSON, HTML or BCF report, and pass/fail counts per specification."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import ifcopenshell.util.placement
import ifcopenshell.util.unit
from ifctester import ids, reporter

from contracts.requests import IfcTesterRequest
from ifcservices.context import TaskContext
from ifcservices.errors import BadInput
from ifcservices.ifcfiles import open_ifc
from ifcservices.tools.bcf_topics import BcfTopic, write_bcf

# The bcf report is written by bcf_topics (ifctester's own writes BCF 2.1 only, with random GUIDs).
REPORTERS: dict[str, type[reporter.Json]] = {"json": reporter.Json, "html": reporter.Html}
# Fixed for good: a failure's topic GUID derives from it, so a rerun's topics update the earlier ones.
FAILURE_NAMESPACE = uuid.UUID("b3f0e7a2-5c1d-4e8f-a6b9-0d4c2e7f1a53")


def _open_ids(path: str, name: str) -> ids.Ids:
    try:
        return ids.open(path)
    except Exception as exc:  # xmlschema raises a family of parse and validation errors
        raise BadInput(f"{name} is not a valid IDS file: {exc}") from None


def _failure(entity: Any) -> dict[str, Any]:
    element = entity.get("element")
    return {
        "global_id": getattr(element, "GlobalId", None),
        "ifc_class": element.is_a() if element is not None else None,
        "name": getattr(element, "Name", None),
        "reason": entity.get("reason"),
    }


def _specification(spec: dict[str, Any]) -> dict[str, Any]:
    failures = [_failure(e) for requirement in spec["requirements"] for e in requirement["failed_entities"]]
    return {
        "name": spec["name"],
        "status": bool(spec["status"]),
        "applicable": spec["total_applicable"],
        "passed": spec["total_applicable_pass"],
        "failed": spec["total_applicable_fail"],
        "checks_passed": spec["total_checks_pass"],
        "checks_failed": spec["total_checks_fail"],
        "failures": failures,
    }


def _location(element: Any) -> tuple[float, float, float] | None:
    placement = getattr(element, "ObjectPlacement", None)
    if placement is None:
        return None
    matrix = ifcopenshell.util.placement.get_local_placement(placement)
    scale = ifcopenshell.util.unit.calculate_unit_scale(element.file)
    x, y, z = (float(v) * scale for v in matrix[:3, 3])
    return (x, y, z)


def _failure_topics(summary: dict[str, Any]) -> list[BcfTopic]:
    """One open topic per entity that fails a requirement, titled as ifctester titles it; its GUID
    derives from the specification, the requirement and the entity's GlobalId, stable across reruns."""
    topics: dict[str, BcfTopic] = {}
    for spec in summary["specifications"]:
        for requirement in spec["requirements"]:
            for failure in requirement["failed_entities"]:
                element = failure.get("element")
                global_id = getattr(element, "GlobalId", None)
                key = (global_id or f"#{element.id()}") if element is not None else "?"
                reason = failure.get("reason") or "No reason"
                parts = [element.is_a() if element is not None else "", getattr(element, "Name", None) or "Unnamed",
                         reason, global_id or "", getattr(element, "Tag", None) or ""]
                guid = str(uuid.uuid5(FAILURE_NAMESPACE, "\n".join((spec["name"], requirement["description"], key))))
                topics[guid] = BcfTopic(
                    guid=guid,
                    title=" - ".join(p for p in parts if p),
                    description=f"{spec['name']} - {requirement['description']}",
                    status="Open",
                    topic_type="Error",
                    global_ids=(global_id,) if global_id else (),
                    point=_location(element) if element is not None else None,
                )
    return list(topics.values())


def run(request: IfcTesterRequest, ctx: TaskContext) -> dict[str, Any]:
    """Validate the model against the IDS and write the report in the requested format."""
    ctx.progress(1, "reading IDS")
    specs = _open_ids(os.fspath(ctx.input(request.ids_filename)), request.ids_filename)
    ctx.progress(10, "opening model")
    ifc_path = ctx.input(request.ifc_filename)
    model = open_ifc(ifc_path, request.ifc_filename)
    ctx.progress(40, f"validating {len(specs.specifications)} specifications")
    specs.validate(model, filepath=os.fspath(ifc_path))
    # The JSON summary comes from ifctester's own JSON reporter, whatever the report format.
    summary = reporter.Json(specs).report()
    ctx.progress(80, f"writing {request.report_type} report")
    with ctx.output(request.output_filename) as output:
        if request.report_type == "bcf":
            write_bcf(Path(output), _failure_topics(summary), version=request.bcf_version,
                      project_name=summary.get("title") or "ifctester", ifc_filename=request.ifc_filename)
        else:
            engine = REPORTERS[request.report_type](specs)
            engine.report()
            engine.to_file(os.fspath(output))
    specifications = [_specification(spec) for spec in summary["specifications"]]
    return {
        "output_files": ctx.output_files,
        "report_type": request.report_type,
        "status": bool(summary["status"]),
        "passed": summary["total_specifications_pass"],
        "failed": summary["total_specifications_fail"],
        "checks_passed": summary["total_checks_pass"],
        "checks_failed": summary["total_checks_fail"],
        "specifications": specifications,
    }
