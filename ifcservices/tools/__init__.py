"""The tool behind each operation, named but not imported: the service process stays light and only
its child processes load ifcopenshell and the tools."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from contracts.operations import OPERATIONS, Operation


@dataclass(frozen=True, slots=True)
class Tool:
    module: str
    # "ifcopenshell crashed while <verb> <file>": what the child was doing with its main input.
    verb: str
    # Request field holding the main input, named in crash messages ("clash_sets": its first file).
    main_input: str


TOOLS: dict[Operation, Tool] = {
    Operation.ifcconvert: Tool("ifcservices.tools.convert", "converting", "input_filename"),
    Operation.ifcclash: Tool("ifcservices.tools.clash", "clash-testing", "clash_sets"),
    Operation.ifccsv: Tool("ifcservices.tools.spreadsheet", "exporting", "filename"),
    Operation.ifccsv_import: Tool("ifcservices.tools.spreadsheet_import", "importing into", "ifc_filename"),
    Operation.ifctester: Tool("ifcservices.tools.tester", "validating", "ifc_filename"),
    Operation.ifcvalidate: Tool("ifcservices.tools.validate", "checking the schema of", "ifc_filename"),
    Operation.ifcdiff: Tool("ifcservices.tools.diff", "diffing", "old_file"),
    Operation.ifc2json: Tool("ifcservices.tools.tojson", "converting", "filename"),
    Operation.calculate_qtos: Tool("ifcservices.tools.qto", "calculating quantities of", "input_file"),
    Operation.ifcpatch: Tool("ifcservices.tools.patch", "patching", "input_file"),
    Operation.ifcpatch_recipes: Tool("ifcservices.tools.patch_recipes", "listing", "recipes"),
    Operation.download_from_url: Tool("ifcservices.tools.fetch", "downloading", "url"),
}


def operations_of(service: str) -> list[Operation]:
    """The operations a service serves, in declaration order."""
    return [op for op, spec in OPERATIONS.items() if spec.service == service]


def modules_of(service: str) -> list[str]:
    return [TOOLS[op].module for op in operations_of(service)]


def main_input(op: Operation, request: BaseModel) -> str:
    """The input file a crash message names: the one the operation is mostly about."""
    value = getattr(request, TOOLS[op].main_input, TOOLS[op].main_input)  # a listing has no input: its name
    if isinstance(value, str):
        return value
    # Clash sets: the first file of the first set, the others are usually its federated neighbours.
    return str(value[0].a[0].file)
