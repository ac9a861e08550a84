"""A clash run as BCF topics: one per clash, or one per smart group, and a closed one for each that an
earlier run had and this one does not.

Topic GUIDs are the clash ids (clash_revisions.clash_id) or the group ids, so a coordination tool that
imports the rerun updates its topics: persisting ones stay open, resolved ones are closed, new ones
appear. Without an earlier run every topic is open and carries no status label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ifcservices.tools.bcf_topics import BcfTopic
from ifcservices.tools.clash_revisions import (
    BCF_STATUS,
    CLASH_TOPIC_TYPE,
    GROUP_TOPIC_TYPE,
    NEW,
    PERSISTING,
    RESOLVED,
    Earlier,
    clash_title,
    group_id,
    midpoint,
)
from ifcservices.tools.grouping import cluster


@dataclass(frozen=True, slots=True)
class SmartGroup:
    name: str  # "<clash set> - <n>", as ifcclash names its smart groups
    id: str
    clashes: list[dict[str, Any]]


def smart_groups(set_name: str, clashes: Sequence[dict[str, Any]], max_distance: float) -> list[SmartGroup]:
    """Clashes whose points lie within ``max_distance`` of one another, each group with its stable id."""
    midpoints = [midpoint(c["p1"], c["p2"]) for c in clashes]
    return [
        SmartGroup(f"{set_name} - {n}", group_id(clashes[i]["id"] for i in members), [clashes[i] for i in members])
        for n, members in enumerate(cluster(midpoints, max_distance), start=1)
    ]


def _status(status: str | None) -> tuple[str, tuple[str, ...]]:
    if status is None:
        return "Open", ()
    topic_status, label = BCF_STATUS[status]
    return topic_status, (label,)


def clash_topic(set_name: str, clash: dict[str, Any]) -> BcfTopic:
    status, labels = _status(clash.get("status"))
    return BcfTopic(
        guid=clash["id"],
        title=clash_title(clash),
        description=(f"{clash['type']} in clash set {set_name!r}, distance {clash['distance']:.3f} m, "
                     f"between {clash['a_global_id']} and {clash['b_global_id']}"),
        status=status,
        topic_type=CLASH_TOPIC_TYPE,
        global_ids=(clash["a_global_id"], clash["b_global_id"]),
        point=midpoint(clash["p1"], clash["p2"]),
        labels=labels,
    )


def group_topic(group: SmartGroup) -> BcfTopic:
    statuses = {c.get("status") for c in group.clashes}
    status, labels = _status(None if statuses == {None} else NEW if NEW in statuses else PERSISTING)
    points = [midpoint(c["p1"], c["p2"]) for c in group.clashes]
    x, y, z = (sum(p[i] for p in points) / len(points) for i in range(3))
    global_ids = tuple(dict.fromkeys(g for c in group.clashes for g in (c["a_global_id"], c["b_global_id"])))
    return BcfTopic(
        guid=group.id,
        title=group.name,
        description=f"{len(group.clashes)} clashes: " + "; ".join(clash_title(c) for c in group.clashes),
        status=status,
        topic_type=GROUP_TOPIC_TYPE,
        global_ids=global_ids,
        point=(x, y, z),
        labels=labels,
    )


def resolved_topic(earlier: Earlier) -> BcfTopic:
    status, labels = _status(RESOLVED)
    return BcfTopic(
        guid=earlier.id,
        title=earlier.title,
        description="not found in this revision: resolved",
        status=status,
        topic_type=GROUP_TOPIC_TYPE if earlier.kind == "group" else CLASH_TOPIC_TYPE,
        global_ids=earlier.global_ids,
        point=earlier.point,
        labels=labels,
    )
