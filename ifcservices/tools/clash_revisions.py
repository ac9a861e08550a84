"""Clash identity across model revisions: a stable id per clash, and new, persisting or resolved
against an earlier run's result.

A clash's id is a UUID (version 5) over its clash set's name, the set's clash test (intersection,
collision, clearance) and the two elements' GlobalIds in sorted order: the same two elements clashing
in the same test are the same clash whichever side ifcclash puts each on. ifcclash's own kind of an
intersection (protrusion or pierce) is left out on purpose: it flips when an element moves a little,
and the clash would then read as resolved and new at once. The same id is the clash's BCF topic GUID.

An earlier run is read from its JSON result (``clash_sets`` with their clashes; results older than the
ids get theirs derived from their GlobalIds) or from its BCF file (the topics' GUIDs and components;
closed topics were resolved already and are not clashes any more).
"""

from __future__ import annotations

import json
import math
import uuid
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, cast

from bcf.bcfxml import load as load_bcf
from bcf.v2 import model as mdl2
from bcf.v3 import model as mdl3
from bcf.xml_parser import AbstractXmlParserSerializer, XmlParserSerializer

from ifcservices.errors import BadInput
from ifcservices.tools.bcf_topics import CAMERA_OFFSET

# Fixed for good: every id ever given derives from it.
CLASH_NAMESPACE = uuid.UUID("2f6b1c3e-8a4d-5b7e-9c10-6d2e4f8a1b37")
CLASH_TOPIC_TYPE = "Clash"
GROUP_TOPIC_TYPE = "Clash group"
# The result's word for each state, and its BCF status and label (a tool that imports a rerun
# reopens nothing and closes what was resolved).
NEW: Final = "new"
PERSISTING: Final = "persisting"
RESOLVED: Final = "resolved"
Status = Literal["new", "persisting", "resolved"]
BCF_STATUS: dict[str, tuple[str, str]] = {NEW: ("Open", "New"), PERSISTING: ("Open", "Persisting"),
                                          RESOLVED: ("Closed", "Resolved")}


def clash_id(clash_set: str, mode: str, a_global_id: str, b_global_id: str) -> str:
    """The stable id of a clash between two elements in a clash set's test."""
    first, second = sorted((a_global_id, b_global_id))
    return str(uuid.uuid5(CLASH_NAMESPACE, "\n".join((clash_set, mode, first, second))))


def group_id(clash_ids: Iterable[str]) -> str:
    """The stable id of a smart group: its clashes' ids, in any order."""
    return str(uuid.uuid5(CLASH_NAMESPACE, "group\n" + "\n".join(sorted(clash_ids))))


@dataclass(frozen=True, slots=True)
class Earlier:
    """A clash, or a smart group, of the earlier run: what a resolved one is listed and shown with."""

    id: str
    kind: Literal["clash", "group"]
    clash_set: str | None
    global_ids: tuple[str, ...]
    title: str
    point: tuple[float, float, float] | None
    record: dict[str, Any]


@dataclass(slots=True)
class EarlierRun:
    source: str  # the request's name for it
    clashes: dict[str, Earlier] = field(default_factory=dict)
    groups: dict[str, Earlier] = field(default_factory=dict)


def midpoint(p1: Sequence[float], p2: Sequence[float]) -> tuple[float, float, float]:
    x, y, z = ((a + b) / 2 for a, b in zip(p1, p2, strict=True))
    return (x, y, z)


def clash_title(clash: dict[str, Any]) -> str:
    """The topic title ifcclash's own exporter gives a clash."""
    return f"{clash.get('a_ifc_class')}/{clash.get('a_name')} and {clash.get('b_ifc_class')}/{clash.get('b_name')}"


def _bad(name: str, reason: str) -> BadInput:
    return BadInput(f"previous: {name} is not a clash result ({reason})")


def _clashes_of(clash_set: dict[str, Any]) -> list[dict[str, Any]]:
    clashes = clash_set.get("clashes") or []
    # ifcclash's document keys them by "<a>-<b>"; the job result lists them.
    values = list(clashes.values()) if isinstance(clashes, dict) else clashes
    if not isinstance(values, list) or not all(isinstance(c, dict) for c in values):
        raise ValueError("its clashes are neither a list nor a mapping of clashes")
    return values


def _from_json(document: Any, run: EarlierRun) -> None:
    sets = document.get("clash_sets") if isinstance(document, dict) else document  # a job result, or ifcclash's
    if not isinstance(sets, list) or not all(isinstance(s, dict) and "name" in s for s in sets):
        raise ValueError("no clash sets with names")
    for clash_set in sets:
        name, mode = str(clash_set["name"]), str(clash_set.get("mode") or "intersection")
        for clash in _clashes_of(clash_set):
            a, b = str(clash["a_global_id"]), str(clash["b_global_id"])
            cid = str(clash.get("id") or clash_id(name, mode, a, b))
            point = midpoint(clash["p1"], clash["p2"]) if clash.get("p1") and clash.get("p2") else None
            record = {k: v for k, v in clash.items() if k != "status"} | {"id": cid, "clash_set": name}
            run.clashes[cid] = Earlier(cid, "clash", name, (a, b), clash_title(clash), point, record)
        pairs = clash_set.get("smart_groups") or {}
        for group, gid in (clash_set.get("smart_group_ids") or {}).items():
            members = tuple(dict.fromkeys(g for pair in pairs.get(group, []) for g in pair))
            record = {"id": gid, "name": group, "clash_set": name}
            run.groups[gid] = Earlier(gid, "group", name, members, str(group), None, record)


def _viewpoint_files(markup: Any) -> list[str]:
    # BCF 2.1 lists a topic's viewpoints in its markup, 3.0 inside its topic.
    if hasattr(markup, "viewpoints"):
        refs = markup.viewpoints
    else:
        refs = markup.topic.viewpoints.view_point if markup.topic.viewpoints else []
    return [str(ref.viewpoint) for ref in refs if ref.viewpoint]


def _look(visinfo: Any) -> tuple[list[str], tuple[float, float, float] | None]:
    """The selected GlobalIds of a viewpoint, and the point its camera looks at."""
    selection = visinfo.components.selection if visinfo.components else None
    global_ids = [c.ifc_guid for c in selection.component if c.ifc_guid] if selection else []
    camera = visinfo.perspective_camera
    if camera is None:
        return global_ids, None
    eye, look = camera.camera_view_point, camera.camera_direction
    # write_bcf puts the camera CAMERA_OFFSET away from the point, looking at it.
    distance = math.hypot(*CAMERA_OFFSET)
    return global_ids, (eye.x + look.x * distance, eye.y + look.y * distance, eye.z + look.z * distance)


def _from_bcf(path: Path, run: EarlierRun) -> None:
    xml = cast(AbstractXmlParserSerializer, XmlParserSerializer())
    bcfxml = load_bcf(path, xml)
    if bcfxml is None:
        raise ValueError("bcf-client could not read it")
    visinfo_class = (mdl3 if bcfxml.version.version_id == "3.0" else mdl2).VisualizationInfo
    with zipfile.ZipFile(path) as archive:
        for guid, handler in bcfxml.topics.items():
            topic = handler.topic
            if (topic.topic_status or "").lower() in {"closed", "resolved"}:
                continue  # resolved in that run or by a coordinator since: not a clash of that revision
            global_ids: list[str] = []
            point = None
            # Parsed here with the one parser: bcf-client's viewpoints property makes a parser (and
            # xsdata's class metadata) anew for each, milliseconds a topic.
            for name in _viewpoint_files(handler.markup):
                selected, looked_at = _look(xml.parse(archive.read(f"{guid}/{name}"), visinfo_class))
                global_ids += selected
                point = point or looked_at
            ids = tuple(dict.fromkeys(global_ids))
            kind: Literal["clash", "group"] = "group" if topic.topic_type == GROUP_TOPIC_TYPE else "clash"
            record: dict[str, Any] = {"id": guid, "title": topic.title}
            if kind == "clash" and len(ids) == 2:
                record |= {"a_global_id": ids[0], "b_global_id": ids[1]}
            earlier = Earlier(guid, kind, None, ids, topic.title, point, record)
            (run.groups if kind == "group" else run.clashes)[guid] = earlier


def read_earlier(path: Path, name: str) -> EarlierRun:
    """The clashes (and smart groups) of an earlier run, from its JSON result or its BCF file; a file
    that is neither is a BadInput naming ``previous``."""
    run = EarlierRun(name)
    try:
        if zipfile.is_zipfile(path):
            _from_bcf(path, run)
        else:
            _from_json(json.loads(path.read_bytes()), run)
    except BadInput:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as exc:
        raise _bad(name, str(exc) or type(exc).__name__) from None
    return run


def mark(current_ids: Iterable[str], earlier: EarlierRun | None) -> dict[str, Status]:
    """Each current clash's status against the earlier run: persisting when it had the same id."""
    if earlier is None:
        return {}
    return {cid: PERSISTING if cid in earlier.clashes else NEW for cid in current_ids}


def _in_set(earlier: Earlier, name: str, mode: str) -> bool:
    if earlier.clash_set is not None:
        return earlier.clash_set == name
    # A BCF topic does not say its clash set; its id does, with its two elements.
    return len(earlier.global_ids) == 2 and clash_id(name, mode, *earlier.global_ids) == earlier.id


def resolved(name: str, mode: str, current_ids: Iterable[str], earlier: EarlierRun | None) -> list[Earlier]:
    """The earlier run's clashes of this clash set that are not found now, in the earlier run's order.
    Clashes of sets this run does not check are neither found nor resolved: they are left out."""
    if earlier is None:
        return []
    now = set(current_ids)
    return [e for cid, e in earlier.clashes.items() if cid not in now and _in_set(e, name, mode)]


def resolved_groups(name: str, current_group_ids: Iterable[str], earlier: EarlierRun | None) -> list[Earlier]:
    """The earlier run's smart groups of this clash set that no group of this run is (their BCF topics
    are closed). A group topic read from BCF is known by its title, "<clash set> - <n>"."""
    if earlier is None:
        return []
    now = set(current_group_ids)
    return [
        e for gid, e in earlier.groups.items()
        if gid not in now and (e.clash_set or e.title.rpartition(" - ")[0]) == name
    ]
