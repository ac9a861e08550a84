"""Differences between two models with ifcdiff: elements added, deleted and changed (by GlobalId)."""

from __future__ import annotations

import json
import os
from typing import Any, get_args

from ifcdiff import RELATIONSHIP_TYPE, IfcDiff

from contracts.requests import IfcDiffRequest
from ifcservices.context import TaskContext
from ifcservices.errors import BadInput
from ifcservices.ifcfiles import open_ifc
from ifcservices.tools.spreadsheet import select

RELATIONSHIPS = frozenset(get_args(RELATIONSHIP_TYPE))


def run(request: IfcDiffRequest, ctx: TaskContext) -> dict[str, Any]:
    """Diff ``old_file`` against ``new_file``; write ifcdiff's JSON and return it with its counts."""
    unknown = sorted(set(request.relationships or ()) - RELATIONSHIPS)
    if unknown:
        raise BadInput(f"relationships: unknown {unknown}; use any of {sorted(RELATIONSHIPS)}")
    ctx.progress(1, "opening old model")
    old = open_ifc(ctx.input(request.old_file), request.old_file)
    ctx.progress(15, "opening new model")
    new = open_ifc(ctx.input(request.new_file), request.new_file)
    if request.filter_elements:
        select(old, request.filter_elements)  # a bad query is the client's error, not a crash
    ctx.progress(30, "comparing")
    differ = IfcDiff(
        old,
        new,
        relationships=list(request.relationships) if request.relationships else None,
        is_shallow=request.is_shallow,
        filter_elements=request.filter_elements,
    )
    differ.diff()
    ctx.progress(90, "writing diff")
    with ctx.output(request.output_file) as output:
        differ.export(os.fspath(output))
        # ifcdiff's JSON (DeepDiff details made plain) is both the file and the result.
        document = json.loads(output.read_text(encoding="utf-8"))
    return {
        "output_files": ctx.output_files,
        "added_count": len(document["added"]),
        "deleted_count": len(document["deleted"]),
        "changed_count": len(document["changed"]),
        "added": sorted(document["added"]),
        "deleted": sorted(document["deleted"]),
        "changed": document["changed"],
    }
