"""Clash detection with ifcclash: intersection, collision or clearance between the sets' models."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ifcclash.ifcclash import Clasher, ClashSettings

from contracts.operations import Operation
from contracts.requests import ClashMode, IfcClashRequest
from ifcservices.context import TaskContext
from ifcservices.errors import BadInput
from ifcservices.ifcfiles import open_ifc
from ifcservices.skipped import fail_if_nothing_done
from ifcservices.tools import main_input
from ifcservices.tools.clash_geometry import ReportingClasher
from ifcservices.tools.grouping import cluster


def _clash_set(request: IfcClashRequest, index: int, ctx: TaskContext, names: dict[str, str]) -> dict[str, Any]:
    clash_set = request.clash_sets[index]
    sides: dict[str, list[dict[str, Any]]] = {}
    for side in ("a", "b"):
        sides[side] = []
        for source in getattr(clash_set, side):
            path = os.fspath(ctx.input(source.file))
            names[path] = source.file
            sides[side].append({"file": path, "mode": source.mode or "a", "selector": source.selector or ""})
    return {
        "name": clash_set.name,
        "a": sides["a"],
        "b": sides["b"],
        "mode": request.mode.value,
        "tolerance": request.tolerance,
        "check_all": request.check_all,
        "allow_touching": request.allow_touching,
        "clearance": request.clearance,
    }


def _pairs(clashes: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "a_global_id": c["a_global_id"],
            "b_global_id": c["b_global_id"],
            "a_ifc_class": c["a_ifc_class"],
            "b_ifc_class": c["b_ifc_class"],
            "a_name": c["a_name"],
            "b_name": c["b_name"],
            "type": c["type"],
            "distance": c["distance"],
            "p1": c["p1"],
            "p2": c["p2"],
        }
        for c in clashes.values()
    ]


def _smart_groups(name: str, pairs: list[dict[str, Any]], max_distance: float) -> dict[str, list[list[str]]]:
    midpoints = [[(a + b) / 2 for a, b in zip(p["p1"], p["p2"], strict=True)] for p in pairs]
    return {
        f"{name} - {n}": [[pairs[i]["a_global_id"], pairs[i]["b_global_id"]] for i in group]
        for n, group in enumerate(cluster(midpoints, max_distance), start=1)
    }


def _write_bcf(clasher: Clasher, sets: list[dict[str, Any]], output: Path) -> None:
    """BCF-XML 2.1 by ifcclash's own exporter: a topic per clash, with a viewpoint at the clash point
    showing both elements; one file per clash set (the second is ``<name>.1``, as ifcclash names them)."""
    clasher.clash_sets = sets
    clasher.settings.output = os.fspath(output)
    clasher.export_bcfxml()


def run(request: IfcClashRequest, ctx: TaskContext) -> dict[str, Any]:
    """Run every clash set; write ifcclash's JSON (clash sets with their clashes) to the output, or
    BCF-XML when its name ends in .bcf, as ifcclash's own export chooses."""
    if request.mode is ClashMode.clearance and request.clearance <= 0:
        raise BadInput("clearance mode needs a clearance greater than 0")
    settings = ClashSettings()
    settings.logger = logging.getLogger("ifcclash")
    settings.logger.setLevel(logging.WARNING)
    clasher = ReportingClasher(settings, ctx.threads)
    names: dict[str, str] = {}  # resolved path -> the request's name for it
    sets = [_clash_set(request, i, ctx, names) for i in range(len(request.clash_sets))]

    ctx.progress(2, "opening models")
    for path, name in names.items():
        # Opened here so a broken model is a clear 422; ifcclash then reuses the open file.
        clasher.ifcs[path] = open_ifc(Path(path), name)

    summaries: list[dict[str, Any]] = []
    for i, clash_set in enumerate(sets):
        ctx.progress(5 + 90 * i / len(sets), f"clash set {i + 1}/{len(sets)}: {clash_set['name']}")
        clasher.process_clash_set(clash_set)
        pairs = _pairs(clash_set.get("clashes", {}))
        summary: dict[str, Any] = {"name": clash_set["name"], "clash_count": len(pairs), "clashes": pairs}
        if request.smart_grouping:
            summary["smart_groups"] = _smart_groups(clash_set["name"], pairs, request.max_cluster_distance)
        summaries.append(summary)

    fail_if_nothing_done(f"ifcclash of {main_input(Operation.ifcclash, request)}", len(clasher.attempted),
                         clasher.skipped)
    ctx.progress(96, "writing results")
    with ctx.output(request.output_filename) as output:
        if output.suffix.lower() == ".bcf":
            _write_bcf(clasher, sets, output)
        for clash_set in sets:
            for source in clash_set["a"] + clash_set["b"]:
                source.pop("ifc", None)
                # The report names files as the request did, not by their place on this machine.
                source["file"] = names[source["file"]]
        document = [
            dict(s, **({"smart_groups": m["smart_groups"]} if "smart_groups" in m else {}))
            for s, m in zip(sets, summaries, strict=True)
        ]
        if output.suffix.lower() != ".bcf":
            output.write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")

    return {
        "output_files": ctx.output_files,
        "clash_count": sum(s["clash_count"] for s in summaries),
        "clash_sets": summaries,
        # Elements left out of the clash test: no geometry, or a shape the tree refused.
        "skipped_elements": clasher.skipped.as_result(),
    }
