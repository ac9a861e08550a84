"""Clash detection with ifcclash: intersection, collision or clearance between the sets' models."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ifcclash.ifcclash import ClashSettings

from contracts.operations import Operation
from contracts.requests import ClashMode, IfcClashRequest
from ifcservices.context import TaskContext
from ifcservices.errors import BadInput
from ifcservices.ifcfiles import open_ifc
from ifcservices.skipped import fail_if_nothing_done
from ifcservices.tools import main_input
from ifcservices.tools.bcf_topics import BcfTopic, write_bcf
from ifcservices.tools.clash_geometry import ReportingClasher
from ifcservices.tools.clash_revisions import (
    NEW,
    PERSISTING,
    RESOLVED,
    EarlierRun,
    clash_id,
    mark,
    read_earlier,
    resolved,
    resolved_groups,
)
from ifcservices.tools.clash_topics import SmartGroup, clash_topic, group_topic, resolved_topic, smart_groups


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
            "id": c["id"],
            **({"status": c["status"]} if "status" in c else {}),
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


def _identify(clash_set: dict[str, Any]) -> None:
    """Give each clash of ifcclash's set its stable id; one pair found twice (both elements on both
    sides) is one clash, kept once."""
    seen: set[str] = set()
    for key, clash in list(clash_set.get("clashes", {}).items()):
        cid = clash_id(clash_set["name"], clash_set["mode"], clash["a_global_id"], clash["b_global_id"])
        if cid in seen:
            del clash_set["clashes"][key]
        else:
            seen.add(cid)
            clash["id"] = cid


def _compare(clash_set: dict[str, Any], earlier: EarlierRun | None) -> None:
    """Mark each clash new or persisting and list the earlier clashes not found now."""
    if earlier is None:
        return
    clashes = list(clash_set.get("clashes", {}).values())
    statuses = mark((c["id"] for c in clashes), earlier)
    for clash in clashes:
        clash["status"] = statuses[clash["id"]]
    gone = resolved(clash_set["name"], clash_set["mode"], statuses, earlier)
    clash_set["resolved"] = [dict(e.record, status=RESOLVED) for e in gone]
    counts = list(statuses.values())
    clash_set["status_counts"] = {NEW: counts.count(NEW), PERSISTING: counts.count(PERSISTING), RESOLVED: len(gone)}


def _group(clash_set: dict[str, Any], pairs: list[dict[str, Any]], request: IfcClashRequest,
           earlier: EarlierRun | None) -> list[SmartGroup] | None:
    """The set's smart groups (ifcclash's ``smart_groups``, and their ids), when asked for."""
    if not request.smart_grouping:
        return None
    groups = smart_groups(clash_set["name"], pairs, request.max_cluster_distance)
    clash_set["smart_groups"] = {g.name: [[c["a_global_id"], c["b_global_id"]] for c in g.clashes] for g in groups}
    clash_set["smart_group_ids"] = {g.name: g.id for g in groups}
    if earlier is not None:
        ended = resolved_groups(clash_set["name"], (g.id for g in groups), earlier)
        clash_set["resolved_smart_groups"] = [dict(e.record, status=RESOLVED) for e in ended]
    return groups


def _topics(clash_set: dict[str, Any], earlier: EarlierRun | None, groups: list[SmartGroup] | None) -> list[BcfTopic]:
    """The set's BCF topics: per clash or per smart group, and closed ones for what was resolved."""
    name = clash_set["name"]
    if groups is not None:
        ended = resolved_groups(name, (g.id for g in groups), earlier)
        return [group_topic(g) for g in groups] + [resolved_topic(e) for e in ended]
    clashes = list(clash_set.get("clashes", {}).values())
    gone = resolved(name, clash_set["mode"], (c["id"] for c in clashes), earlier)
    return [clash_topic(name, c) for c in clashes] + [resolved_topic(e) for e in gone]


def _totals(sets: list[dict[str, Any]]) -> dict[str, int]:
    return {status: sum(s["status_counts"][status] for s in sets) for status in (NEW, PERSISTING, RESOLVED)}


def run(request: IfcClashRequest, ctx: TaskContext) -> dict[str, Any]:
    """Run every clash set; write ifcclash's JSON (clash sets with their clashes, each with its stable
    id) to the output, or BCF-XML (``bcf_version``) when its name ends in .bcf: one file, one topic per
    clash or smart group. With ``previous``, each clash is new or persisting and the earlier run's
    clashes not found now are listed as resolved (closed topics in BCF)."""
    if request.mode is ClashMode.clearance and request.clearance <= 0:
        raise BadInput("clearance mode needs a clearance greater than 0")
    # Read first: a wrong previous fails the job before any geometry is made.
    earlier = read_earlier(ctx.input(request.previous), request.previous) if request.previous else None
    settings = ClashSettings()
    settings.logger = logging.getLogger("ifcclash")
    settings.logger.setLevel(logging.WARNING)
    clasher = ReportingClasher(settings, ctx.threads, ctx.geometry_cache())
    names: dict[str, str] = {}  # resolved path -> the request's name for it
    sets = [_clash_set(request, i, ctx, names) for i in range(len(request.clash_sets))]

    ctx.progress(2, "opening models")
    for path, name in names.items():
        # Opened here so a broken model is a clear 422; ifcclash then reuses the open file.
        clasher.ifcs[path] = open_ifc(Path(path), name)

    summaries: list[dict[str, Any]] = []
    topics: list[BcfTopic] = []
    for i, clash_set in enumerate(sets):
        ctx.progress(5 + 90 * i / len(sets), f"clash set {i + 1}/{len(sets)}: {clash_set['name']}")
        clasher.process_clash_set(clash_set)
        _identify(clash_set)
        _compare(clash_set, earlier)
        pairs = _pairs(clash_set.get("clashes", {}))
        groups = _group(clash_set, pairs, request, earlier)
        summary: dict[str, Any] = {"name": clash_set["name"], "clash_count": len(pairs), "clashes": pairs}
        for key in ("smart_groups", "smart_group_ids", "resolved", "resolved_smart_groups", "status_counts"):
            if key in clash_set:
                summary[key] = clash_set[key]
        topics += _topics(clash_set, earlier, groups)
        summaries.append(summary)

    fail_if_nothing_done(f"ifcclash of {main_input(Operation.ifcclash, request)}", len(clasher.attempted),
                         clasher.skipped)
    ctx.progress(96, "writing results")
    with ctx.output(request.output_filename) as output:
        for clash_set in sets:
            for source in clash_set["a"] + clash_set["b"]:
                source.pop("ifc", None)
                # The report names files as the request did, not by their place on this machine.
                source["file"] = names[source["file"]]
        if output.suffix.lower() == ".bcf":
            # Two sets of one name may find one clash twice: one topic (the GUID is the clash's id).
            unique: dict[str, BcfTopic] = {}
            for topic in topics:
                unique.setdefault(topic.guid, topic)
            write_bcf(output, list(unique.values()), version=request.bcf_version, project_name=sets[0]["name"],
                      ifc_filename=sets[0]["a"][0]["file"])
        else:
            output.write_text(json.dumps(sets, indent=2, default=str), encoding="utf-8")

    result: dict[str, Any] = {
        "output_files": ctx.output_files,
        "clash_count": sum(s["clash_count"] for s in summaries),
        "clash_sets": summaries,
        # Elements left out of the clash test: no geometry, or a shape the tree refused.
        "skipped_elements": clasher.skipped.as_result(),
        "geometry_cache": clasher.cache_stats(),
    }
    if earlier is not None:
        result["previous"] = request.previous
        result["status_counts"] = _totals(summaries)
    return result
