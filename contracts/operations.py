"""The operations ifcflow runs: one arq function, one gateway route and one service route each."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Operation(StrEnum):
    """Operation names; each is also the arq function name the worker registers."""

    ifcconvert = "ifcconvert"
    ifcclash = "ifcclash"
    ifccsv = "ifccsv"
    ifccsv_import = "ifccsv_import"
    ifctester = "ifctester"
    ifcvalidate = "ifcvalidate"
    ifcdiff = "ifcdiff"
    ifc2json = "ifc2json"
    calculate_qtos = "calculate_qtos"
    # ifcpipeline's other endpoints (their gateway routes: service/routers/compat*.py).
    ifcpatch = "ifcpatch"
    ifcpatch_recipes = "ifcpatch_recipes"
    download_from_url = "download_from_url"


# The IFC services, named as their IFCFLOW_<NAME>_URL settings; outputs go to output/<service>/.
SERVICES: tuple[str, ...] = (
    "ifcconvert", "ifcclash", "ifccsv", "ifctester", "ifcdiff", "ifc2json", "ifc5d", "ifcpatch",
)


@dataclass(frozen=True, slots=True)
class OperationSpec:
    operation: Operation
    service: str
    # Path of the route, the same on the gateway and on the service (the RQ system's endpoint names).
    path: str
    summary: str


OPERATIONS: dict[Operation, OperationSpec] = {
    spec.operation: spec
    for spec in (
        OperationSpec(Operation.ifcconvert, "ifcconvert", "/ifcconvert", "Convert IFC to glTF, OBJ, ..."),
        OperationSpec(Operation.ifcclash, "ifcclash", "/ifcclash", "Clash detection between clash sets"),
        OperationSpec(Operation.ifccsv, "ifccsv", "/ifccsv", "Export IFC elements to CSV, XLSX or ODS"),
        OperationSpec(Operation.ifccsv_import, "ifccsv", "/ifccsv/import", "Import CSV edits back into IFC"),
        OperationSpec(Operation.ifctester, "ifctester", "/ifctester", "Validate IFC against an IDS file"),
        # Schema and rule checks run beside the IDS checks: one more operation, no service to deploy.
        OperationSpec(Operation.ifcvalidate, "ifctester", "/ifcvalidate", "Validate an IFC file against its schema"),
        OperationSpec(Operation.ifcdiff, "ifcdiff", "/ifcdiff", "Diff two IFC models"),
        OperationSpec(Operation.ifc2json, "ifc2json", "/ifc2json", "Convert IFC to JSON"),
        OperationSpec(Operation.calculate_qtos, "ifc5d", "/calculate-qtos", "Quantity take-off with ifc5d"),
        OperationSpec(Operation.ifcpatch, "ifcpatch", "/patch/execute", "Run an ifcpatch recipe on a model"),
        # The listing is asked of the service directly (contracts/patch_check.py, for every patch's check),
        # never queued. Downloads run on the ifcpatch service too: one more service to deploy, not two.
        OperationSpec(Operation.ifcpatch_recipes, "ifcpatch", "/patch/recipes/list", "List ifcpatch recipes"),
        OperationSpec(Operation.download_from_url, "ifcpatch", "/download-from-url", "Download a URL into uploads/"),
    )
}
