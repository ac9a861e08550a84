"""bcf_topics.write_bcf: BCF 2.1 and 3.0 files that bcf-client reads back with the topics as given."""

from __future__ import annotations

import math
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from bcf.bcfxml import load

from ifcservices.tools.bcf_topics import BcfTopic, write_bcf

NAMESPACE = uuid.UUID("7d0f4a52-2f5e-4a34-9a3e-4f2d6f7f2c11")
TOPICS = (
    BcfTopic(
        guid=str(uuid.uuid5(NAMESPACE, "wall-a/wall-b")),
        title="Wall A and Wall B",
        description="hard clash, 0.2 m",
        status="Open",
        topic_type="Clash",
        global_ids=("0aaaaaaaaaaaaaaaaaaaaa", "0bbbbbbbbbbbbbbbbbbbbb"),
        point=(2.0, 1.0, 1.5),
        labels=("New",),
    ),
    BcfTopic(
        guid=str(uuid.uuid5(NAMESPACE, "wall-c/wall-d")),
        title="Wall C and Wall D",
        description="resolved",
        status="Closed",
        topic_type="Clash",
        global_ids=("0ccccccccccccccccccccc",),
    ),
)


def _labels(topic: Any) -> list[str]:
    labels = topic.labels
    return list(getattr(labels, "label", labels) or [])  # 3.0 wraps the list, 2.1 does not


@pytest.mark.parametrize("version", ["2.1", "3.0"])
def test_topics_read_back_with_their_guids_components_and_statuses(tmp_path: Path, version: str) -> None:
    path = tmp_path / "issues.bcf"
    write_bcf(path, TOPICS, version=version, project_name="revision A", ifc_filename="model.ifc")  # type: ignore[arg-type]

    bcfxml = load(path)
    assert bcfxml is not None and bcfxml.version.version_id == version
    assert set(bcfxml.topics) == {t.guid for t in TOPICS}
    for given in TOPICS:
        handler = bcfxml.topics[given.guid]
        topic = handler.topic
        assert (topic.guid, topic.title, topic.topic_status, topic.topic_type) == (
            given.guid, given.title, given.status, given.topic_type,
        )
        assert _labels(topic) == list(given.labels)
        (viewpoint,) = handler.viewpoints.values()
        assert viewpoint.get_selected_guids() == list(given.global_ids)
        camera = viewpoint.visualization_info.perspective_camera
        if given.point is None:
            assert camera is None
        else:
            assert camera is not None
            eye = camera.camera_view_point
            distance = math.dist((eye.x, eye.y, eye.z), given.point)
            assert 2 < distance < 20  # the elements around the point fill the view
            direction = camera.camera_direction
            # The camera looks at the point: the point lies on its line of sight.
            ahead = [p - e for p, e in zip(given.point, (eye.x, eye.y, eye.z), strict=True)]
            assert math.isclose(sum(a * d for a, d in zip(ahead, (direction.x, direction.y, direction.z), strict=True)),
                                distance, rel_tol=1e-6)


@pytest.mark.parametrize("version", ["2.1", "3.0"])
def test_rewriting_the_same_topics_keeps_every_guid_and_file_name(tmp_path: Path, version: str) -> None:
    first, second = tmp_path / "first.bcf", tmp_path / "second.bcf"
    write_bcf(first, TOPICS, version=version)  # type: ignore[arg-type]
    write_bcf(second, TOPICS, version=version)  # type: ignore[arg-type]
    names = [sorted(zipfile.ZipFile(p).namelist()) for p in (first, second)]
    # Topic folders and viewpoint files are named by GUID: equal names, so an import updates.
    assert names[0] == names[1]
    assert all(any(n.startswith(t.guid + "/") and n.endswith(".bcfv") for n in names[0]) for t in TOPICS)


def test_bcf_3_lists_the_types_statuses_and_labels_it_uses(tmp_path: Path) -> None:
    path = tmp_path / "issues.bcf"
    write_bcf(path, TOPICS, version="3.0")
    bcfxml = load(path)
    assert bcfxml is not None
    extensions = bcfxml.extensions
    assert extensions is not None
    assert extensions.topic_statuses.topic_status == ["Closed", "Open"]  # type: ignore[union-attr]
    assert extensions.topic_types.topic_type == ["Clash"]  # type: ignore[union-attr]
    assert extensions.topic_labels.topic_label == ["New"]  # type: ignore[union-attr]


def test_a_failed_write_leaves_no_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "issues.bcf"
    twice = (TOPICS[0], TOPICS[0])
    with pytest.raises(ValueError, match="share the GUID"):
        write_bcf(path, twice)
    with pytest.raises(ValueError):
        write_bcf(path, [BcfTopic("not-a-uuid", "t", "d", "Open", "Clash", ())])
    assert list(tmp_path.iterdir()) == []
