"""IDS validation with ifctester: a JSON, HTML or BCF report, and pass/fail counts per specification."""

from __future__ import annotations

import os
from typing import Any

from ifctester import ids, reporter

from contracts.requests import IfcTesterRequest
from ifcservices.context import TaskContext
from ifcservices.errors import BadInput
from ifcservices.ifcfiles import open_ifc

REPORTERS: dict[str, type[reporter.Json]] = {"json": reporter.Json, "html": reporter.Html, "bcf": reporter.Bcf}


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
    engine = REPORTERS[request.report_type](specs)
    engine.report()
    with ctx.output(request.output_filename) as output:
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
