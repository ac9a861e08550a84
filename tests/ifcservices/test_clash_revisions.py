"""Clash across revisions: stable clash ids, new/persisting/resolved against an earlier run, and BCF
topics that a coordination tool updates (same GUIDs) and closes (resolved) on import of the rerun.

Revision A has two clashes, P/Q and R/S, and a lone wall T. Revision B is A with S moved away (R/S is
resolved), P/Q untouched (persisting) and a new wall U across T (T/U is new); every element keeps its
GlobalId, as an authoring tool keeps them from one export to the next.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.api.geometry
import ifcopenshell.api.root
import ifcopenshell.api.spatial
import numpy as np
import pytest
from bcf.bcfxml import load
from ifcmodels import build_walls, guid_of
from live_env import live_env

from tests.conftest import submit, until

REVISION_A = {
    "P": (0.0, 0.0, False, 5.0, None),
    "Q": (2.0, -1.0, True, 5.0, None),
    "R": (20.0, 0.0, False, 5.0, None),
    "S": (22.0, -1.0, True, 5.0, None),
    "T": (40.0, 0.0, False, 5.0, None),
}


def _revision_b(a: ifcopenshell.file) -> ifcopenshell.file:
    model = ifcopenshell.file.from_string(a.to_string())
    walls = {w.Name: w for w in model.by_type("IfcWall")}
    moved = np.eye(4)
    moved[0, 3] = 60.0  # far from everything: R/S no longer clash
    ifcopenshell.api.geometry.edit_object_placement(model, product=walls["S"], matrix=moved)
    body = next(c for c in model.by_type("IfcGeometricRepresentationSubContext") if c.ContextIdentifier == "Body")
    wall = ifcopenshell.api.root.create_entity(model, ifc_class="IfcWall", name="U")
    across = np.eye(4)
    across[:2, :2] = [[0.0, -1.0], [1.0, 0.0]]
    across[0, 3], across[1, 3] = 42.0, -1.0  # across T
    ifcopenshell.api.geometry.edit_object_placement(model, product=wall, matrix=across)
    representation = ifcopenshell.api.geometry.add_wall_representation(
        model, context=body, length=5.0, height=3.0, thickness=0.2
    )
    ifcopenshell.api.geometry.assign_representation(model, product=wall, representation=representation)
    ifcopenshell.api.spatial.assign_container(
        model, relating_structure=model.by_type("IfcBuildingStorey")[0], products=[wall]
    )
    return model


@pytest.fixture(scope="module")
def revisions(data_dir: Path) -> dict[str, str]:
    """The two revisions in uploads/; the GlobalId of each wall by name."""
    a = build_walls(REVISION_A)
    a.write(str(data_dir / "uploads" / "rev_a.ifc"))
    _revision_b(a).write(str(data_dir / "uploads" / "rev_b.ifc"))
    b = data_dir / "uploads" / "rev_b.ifc"
    return {name: guid_of(b, name) for name in "PQRSTU"}


def clash(model: str, output: str, **options: Any) -> dict[str, Any]:
    return {"clash_sets": [{"name": "walls", "a": [{"file": f"uploads/{model}"}]}], "output_filename": output,
            **options}


async def run_clash(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/ifcclash/ifcclash", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def pair(clash: dict[str, Any]) -> frozenset[str]:
    return frozenset((clash["a_global_id"], clash["b_global_id"]))


def _labels(topic: Any) -> list[str]:
    return list(getattr(topic.labels, "label", topic.labels) or [])  # 3.0 wraps the list, 2.1 does not


async def test_clashes_of_b_against_a_are_new_persisting_and_resolved(client, data_dir, revisions):
    walls = revisions
    first = await run_clash(client, clash("rev_a.ifc", "output/ifcclash/rev_a.json"))
    a_ids = {pair(c): c["id"] for c in first["clash_sets"][0]["clashes"]}
    assert set(a_ids) == {frozenset((walls["P"], walls["Q"])), frozenset((walls["R"], walls["S"]))}
    assert "status" not in first["clash_sets"][0]["clashes"][0]  # no earlier run, no status

    second = await run_clash(client, clash("rev_b.ifc", "output/ifcclash/rev_b.json",
                                           previous="output/ifcclash/rev_a.json"))
    summary = second["clash_sets"][0]
    statuses = {pair(c): (c["status"], c["id"]) for c in summary["clashes"]}
    persisting, new = frozenset((walls["P"], walls["Q"])), frozenset((walls["T"], walls["U"]))
    assert statuses[persisting] == ("persisting", a_ids[persisting])  # the same clash keeps its id
    assert statuses[new][0] == "new" and statuses[new][1] not in a_ids.values()
    [gone] = summary["resolved"]
    assert gone["status"] == "resolved" and gone["id"] == a_ids[frozenset((walls["R"], walls["S"]))]
    assert pair(gone) == frozenset((walls["R"], walls["S"]))
    assert second["status_counts"] == summary["status_counts"] == {"new": 1, "persisting": 1, "resolved": 1}
    assert second["previous"] == "output/ifcclash/rev_a.json"


async def test_ids_do_not_depend_on_which_side_an_element_is(client, revisions):
    one_set = await run_clash(client, clash("rev_a.ifc", "output/ifcclash/one.json"))
    walls = revisions
    def only(name: str) -> list[dict[str, str]]:
        return [{"file": "uploads/rev_a.ifc", "mode": "i", "selector": f"IfcWall, Name={name}"}]

    # Q on side a and P on side b: the pair the single-set run found, the other way round or not.
    sides = {"clash_sets": [{"name": "walls", "a": only("Q"), "b": only("P")}],
             "output_filename": "output/ifcclash/sides.json"}
    by_side = await run_clash(client, sides)
    [side_clash] = by_side["clash_sets"][0]["clashes"]
    assert side_clash["a_global_id"] == walls["Q"]
    same = next(c for c in one_set["clash_sets"][0]["clashes"] if pair(c) == pair(side_clash))
    assert side_clash["id"] == same["id"]


@pytest.mark.parametrize("version", ["2.1", "3.0"])
async def test_bcf_of_b_keeps_persisting_guids_and_closes_the_resolved(client, data_dir, revisions, version):
    walls = revisions
    await run_clash(client, clash("rev_a.ifc", f"output/ifcclash/rev_a_{version}.bcf", bcf_version=version))
    first = load(data_dir / f"output/ifcclash/rev_a_{version}.bcf")
    assert first is not None and first.version.version_id == version
    a_topics: dict[frozenset[str], str] = {}
    for guid, handler in first.topics.items():
        (viewpoint,) = handler.viewpoints.values()
        a_topics[frozenset(viewpoint.get_selected_guids() or [])] = guid
    assert all(t.topic.topic_status == "Open" for t in first.topics.values())

    # B names A's BCF itself: its topics' GUIDs are the clash ids.
    result = await run_clash(client, clash("rev_b.ifc", f"output/ifcclash/rev_b_{version}.bcf", bcf_version=version,
                                           previous=f"output/ifcclash/rev_a_{version}.bcf"))
    assert result["status_counts"] == {"new": 1, "persisting": 1, "resolved": 1}
    second = load(data_dir / f"output/ifcclash/rev_b_{version}.bcf")
    assert second is not None and second.version.version_id == version
    topics = {}
    for guid, handler in second.topics.items():
        (viewpoint,) = handler.viewpoints.values()
        components = frozenset(viewpoint.get_selected_guids() or [])
        assert len(components) == 2 and viewpoint.visualization_info.perspective_camera is not None
        topics[components] = (guid, handler.topic.topic_status, _labels(handler.topic))
    persisting = frozenset((walls["P"], walls["Q"]))
    resolved = frozenset((walls["R"], walls["S"]))
    assert topics[persisting] == (a_topics[persisting], "Open", ["Persisting"])
    assert topics[resolved] == (a_topics[resolved], "Closed", ["Resolved"])
    assert topics[frozenset((walls["T"], walls["U"]))][1:] == ("Open", ["New"])
    assert len(topics) == 3
    ids = {pair(c): c["id"] for c in result["clash_sets"][0]["clashes"]}
    assert {topics[p][0] for p in ids} == set(ids.values())  # topic GUIDs are the clash ids


async def test_a_rerun_of_the_same_inputs_gives_the_same_topic_guids(client, data_dir, revisions):
    await run_clash(client, clash("rev_a.ifc", "output/ifcclash/base.json"))
    guids = []
    for n in (1, 2):
        body = clash("rev_b.ifc", f"output/ifcclash/again_{n}.bcf", previous="output/ifcclash/base.json")
        await run_clash(client, body)
        bcfxml = load(data_dir / f"output/ifcclash/again_{n}.bcf")
        assert bcfxml is not None
        guids.append({g: t.topic.topic_status for g, t in bcfxml.topics.items()})
    assert guids[0] == guids[1] and len(guids[0]) == 3  # an import of the rerun updates, never duplicates


async def test_smart_groups_are_topics_with_stable_guids_and_resolved_groups_are_closed(client, data_dir, revisions):
    options = {"smart_grouping": True, "max_cluster_distance": 3.0}
    first = await run_clash(client, clash("rev_a.ifc", "output/ifcclash/groups_a.json", **options))
    a_groups = first["clash_sets"][0]["smart_group_ids"]
    assert len(a_groups) == 2  # P/Q and R/S are 20 m apart: two groups
    result = await run_clash(client, clash("rev_b.ifc", "output/ifcclash/groups_b.bcf",
                                           previous="output/ifcclash/groups_a.json", **options))
    b_groups = result["clash_sets"][0]["smart_group_ids"]
    [ended] = result["clash_sets"][0]["resolved_smart_groups"]
    bcfxml = load(data_dir / "output/ifcclash/groups_b.bcf")
    assert bcfxml is not None
    statuses = {g: (t.topic.topic_type, t.topic.topic_status, _labels(t.topic)) for g, t in bcfxml.topics.items()}
    kept = set(a_groups.values()) & set(b_groups.values())
    assert len(kept) == 1 and statuses[kept.pop()] == ("Clash group", "Open", ["Persisting"])
    assert statuses[ended["id"]] == ("Clash group", "Closed", ["Resolved"])
    assert ended["id"] in a_groups.values() and len(statuses) == 3


async def test_a_result_without_ids_gets_them_from_its_global_ids(client, data_dir, revisions):
    first = await run_clash(client, clash("rev_a.ifc", "output/ifcclash/old.json"))
    old = json.loads((data_dir / "output/ifcclash/old.json").read_text())
    for clash_set in old:  # as results written before clashes had ids
        for item in clash_set["clashes"].values():
            del item["id"]
    (data_dir / "output/ifcclash/old.json").write_text(json.dumps(old))
    body = clash("rev_a.ifc", "output/ifcclash/same.json", previous="output/ifcclash/old.json")
    result = await run_clash(client, body)
    assert result["status_counts"] == {"new": 0, "persisting": 2, "resolved": 0}
    assert {c["id"] for c in result["clash_sets"][0]["clashes"]} == {c["id"] for c in first["clash_sets"][0]["clashes"]}


async def test_a_previous_that_is_no_clash_result_fails_the_job_naming_previous(client, revisions):
    response = await client.post("/ifcclash/ifcclash", json=clash("rev_b.ifc", "output/ifcclash/x.json",
                                                                  previous="uploads/fire.ids"))
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("previous: uploads/fire.ids is not a clash result")


class TestThroughTheGateway:
    """Gateway -> Redis queue -> arq worker -> the real services, with ``previous`` as a job id."""

    @pytest.fixture
    def env(self, redis_url: str, data_dir: Path, live_services: str) -> dict[str, str]:
        return dict(live_env(redis_url, data_dir, live_services))

    async def test_previous_as_a_job_id_is_resolved_to_its_result(self, worker, api, revisions):
        first = await until(api, await submit(api, "/ifcclash", clash("rev_a.ifc", "pipeline_a.json")), timeout=120)
        assert first["status"] == "complete", first
        body = clash("rev_b.ifc", "pipeline_b.bcf", previous=first["job_id"], bcf_version="3.0")
        second = await until(api, await submit(api, "/ifcclash", body), timeout=120)
        assert second["status"] == "complete", second
        assert second["result"]["status_counts"] == {"new": 1, "persisting": 1, "resolved": 1}
        assert second["result"]["previous"] == "output/ifcclash/pipeline_a.json"
        assert second["result"]["output_files"] == ["output/ifcclash/pipeline_b.bcf"]

    async def test_an_unknown_previous_is_a_422_naming_previous(self, api, revisions):
        for previous, reason in (("0" * 32, "no job"), ("output/ifcclash/nothing.json", "not found")):
            response = await api.post("/ifcclash", json=clash("rev_b.ifc", "x.json", previous=previous))
            assert response.status_code == 422, response.text
            [detail] = response.json()["detail"]
            assert detail["loc"] == ["body", "previous"] and reason in detail["msg"], detail

    async def test_a_previous_job_that_is_no_clash_job_is_a_422(self, worker, api, revisions):
        body = {"filename": "rev_a.ifc", "output_filename": "rev_a_elements.json"}
        job = await until(api, await submit(api, "/ifc2json", body), timeout=120)
        response = await api.post("/ifcclash", json=clash("rev_b.ifc", "x.json", previous=job["job_id"]))
        assert response.status_code == 422, response.text
        [detail] = response.json()["detail"]
        assert detail["loc"] == ["body", "previous"] and "not an ifcclash job" in detail["msg"]
