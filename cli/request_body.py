"""From ``ifcflow submit OP [-o OUT] [--set k=v] FILES`` to the operation's JSON body.

The files on the command line fill the operation's input path fields in the order the request model
declares them (``ifcdiff old.ifc new.ifc``: ``old_file``, ``new_file``); ``-o`` sets its first output
path field; ``--set`` any field by name, its value read as JSON when it parses as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import TypeAdapter, ValidationError

from cli.connection import ClientError
from contracts.operations import OPERATIONS, Operation
from contracts.paths import PathRole, role_of
from contracts.requests import REQUEST_MODELS

# The clash operation has no top-level input field: its files go into one clash set.
CLASH_SETS = "clash_sets"
# What -o might look like, for the message when a required output name is missing.
_OUTPUT_EXAMPLES: dict[Operation, str] = {
    Operation.ifcconvert: "model.glb",
    Operation.ifcclash: "clashes.json",
    Operation.ifccsv: "elements.csv",
    Operation.ifctester: "report.json",
    Operation.ifc2json: "model.json",
}


@dataclass(frozen=True, slots=True)
class OperationShape:
    """What the command line needs to know of one operation's request model."""

    operation: Operation
    path: str  # the gateway route
    inputs: tuple[str, ...]  # input path fields, in declaration order
    output: str | None  # the field -o sets
    output_required: bool
    fields: tuple[str, ...]  # every name --set accepts (field names, aliases, scheduling fields)
    types: dict[str, Any]  # the declared type of each of the operation's own fields, by name and alias


def parse_operation(name: str) -> Operation:
    """``ifcconvert``, ``calculate-qtos``, ``ifccsv_import``, ... (the route path works too)."""
    wanted = name.strip().lstrip("/").replace("/", "_").replace("-", "_").lower()
    for op in Operation:
        if wanted in (op.value, OPERATIONS[op].path.lstrip("/").replace("/", "_").replace("-", "_")):
            return op
    known = ", ".join(op.value for op in Operation)
    raise ClientError(f"unknown operation {name!r}; use one of {known}")


def scheduling_fields() -> tuple[str, ...]:
    """Fields every operation body may carry besides its own (``defer_by``, ...): the gateway's JobOptions."""
    from service.schemas import JobOptions  # imported here: only submit needs the gateway's models

    return tuple(JobOptions.model_fields)


def shape_of(op: Operation) -> OperationShape:
    model = REQUEST_MODELS[op]
    inputs: list[str] = []
    outputs: list[tuple[str, bool]] = []
    names: list[str] = []
    types: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        names.append(name)
        types[name] = field.annotation
        if field.alias and field.alias != name:
            names.append(field.alias)
            types[field.alias] = field.annotation
        role = role_of(field)
        if role is PathRole.input:
            inputs.append(name)
        elif role is PathRole.output:
            outputs.append((name, field.is_required()))
    output, required = outputs[0] if outputs else (None, False)
    return OperationShape(
        operation=op,
        path=OPERATIONS[op].path,
        inputs=tuple(inputs),
        output=output,
        output_required=required,
        fields=(*names, *scheduling_fields()),
        types=types,
    )


def _accepts(annotation: Any, value: Any) -> bool:
    try:
        TypeAdapter(annotation).validate_python(value)
    except ValidationError:
        return False
    return True


def read_value(raw: str, annotation: Any = None) -> Any:
    """JSON when it parses, else the text; the text too when only it fits the field (``query=123``)."""
    try:
        parsed = json.loads(raw)
    except ValueError:
        return raw
    if annotation is not None and not isinstance(parsed, str) and not _accepts(annotation, parsed):
        if _accepts(annotation, raw):
            return raw
    return parsed


def parse_sets(pairs: list[str], shape: OperationShape) -> dict[str, Any]:
    """``key=value`` pairs; a value that parses as JSON is that JSON (``true``, ``3``, ``["IfcWall"]``)."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ClientError(f"--set {pair!r}: write it as key=value")
        if key not in shape.fields:
            raise ClientError(
                f"--set {key}: {shape.operation.value} has no such field; it has {', '.join(shape.fields)}"
            )
        values[key] = read_value(raw, shape.types.get(key))
    return values


@dataclass(frozen=True, slots=True)
class RequestPlan:
    """The files to upload, each with the field it fills (None: a clash-set member), and the rest."""

    shape: OperationShape
    files: tuple[tuple[str | None, Path], ...]
    fixed: dict[str, Any]  # the body's fields that do not depend on the uploads

    def body(self, remote: list[str]) -> dict[str, Any]:
        """The JSON body, given the uploaded files' paths on the gateway (in ``files`` order)."""
        body = dict(self.fixed)
        members: list[str] = []
        for (field, _), path in zip(self.files, remote, strict=True):
            if field is None:
                members.append(path)
            else:
                body[field] = path
        if members and CLASH_SETS not in body:
            # One file: its elements against each other; more: the first against all the others.
            first, *others = members
            clash_set: dict[str, Any] = {"name": "clash", "a": [{"file": first}]}
            if others:
                clash_set["b"] = [{"file": other} for other in others]
            body[CLASH_SETS] = [clash_set]
        return body


def plan_request(shape: OperationShape, files: list[Path], output: str | None, sets: dict[str, Any]) -> RequestPlan:
    """Check the command line against the operation before anything is uploaded."""
    op = shape.operation.value
    for path in files:
        if not path.is_file():
            raise ClientError(
                f"{path}: no such file here (a file already on the gateway goes in with --set FIELD=uploads/NAME)"
            )
    fixed = dict(sets)
    if output is not None:
        if shape.output is None:
            raise ClientError(f"-o/--output: {op} has no output file")
        fixed[shape.output] = output
    if shape.operation is Operation.ifcclash:
        if not files and CLASH_SETS not in fixed:
            raise ClientError(f"{op} needs one or more IFC files (or --set {CLASH_SETS}=[...])")
        assigned: list[tuple[str | None, Path]] = [(None, path) for path in files]
    else:
        free = [name for name in shape.inputs if name not in fixed]
        if len(files) != len(free):
            wanted = " ".join(name.upper() for name in free) or "no files"
            set_note = " (the others are set with --set)" if len(free) < len(shape.inputs) else ""
            raise ClientError(
                f"{op} takes {len(free)} input file(s): {wanted}{set_note}; got {len(files)}",
            )
        assigned = list(zip(free, files, strict=True))
    if shape.output and shape.output_required and shape.output not in fixed:
        example = _OUTPUT_EXAMPLES.get(shape.operation, "NAME")
        if files:
            example = str(PurePosixPath(files[0].name).with_suffix(PurePosixPath(example).suffix))
        raise ClientError(f"{op} needs an output name: -o/--output {example} (sets {shape.output})")
    return RequestPlan(shape=shape, files=tuple(assigned), fixed=fixed)
