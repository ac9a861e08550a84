"""ifctester's bcf report: BCF 2.1 or 3.0, one open topic per failing element with stable GUIDs."""

from __future__ import annotations

from typing import Any

import pytest
from bcf.bcfxml import load
from ifcmodels import guid_of


def bcf_check(output: str, version: str) -> dict[str, Any]:
    return {"ifc_filename": "uploads/walls.ifc", "ids_filename": "uploads/fire.ids", "output_filename": output,
            "report_type": "bcf", "bcf_version": version}


@pytest.mark.parametrize("version", ["2.1", "3.0"])
async def test_each_failing_wall_is_a_topic_that_a_rerun_keeps(client, data_dir, version):
    topics = []
    for n in (1, 2):
        output = f"output/ifctester/fire_{version}_{n}.bcf"
        response = await client.post("/ifctester/ifctester", json=bcf_check(output, version))
        assert response.status_code == 200, response.text
        bcfxml = load(data_dir / output)
        assert bcfxml is not None and bcfxml.version.version_id == version
        found = {}
        for guid, handler in bcfxml.topics.items():
            (viewpoint,) = handler.viewpoints.values()
            assert viewpoint.visualization_info.perspective_camera is not None  # looks at the wall
            assert (handler.topic.topic_status, handler.topic.topic_type) == ("Open", "Error")
            found[guid] = tuple(viewpoint.get_selected_guids() or [])
        topics.append(found)
    walls = data_dir / "uploads/walls.ifc"
    assert sorted(topics[0].values()) == sorted((guid_of(walls, n),) for n in "BCD")
    assert topics[0] == topics[1]  # the same failures are the same topics: an import updates them
