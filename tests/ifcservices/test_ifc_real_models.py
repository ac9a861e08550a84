"""Real public models of several authoring tools go through every geometry and data operation whole.

ArchiCAD 20 (AC20-FZK-Haus, KIT), buildingSMART's hand-made spec example (slab-standard-case) and
Geometry Gym's exporter (bath-csg-solid, in tests/data/ifc with its source and license).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from ifcmodels import REPO

MODELS = ["AC20-FZK-Haus.ifc", "slab-standard-case.ifc", "bath-csg-solid.ifc"]
ROUTES: dict[str, Any] = {
    "/ifcconvert/ifcconvert": lambda m: {"input_filename": m, "output_filename": f"output/real/{Path(m).stem}.glb"},
    "/ifcclash/ifcclash": lambda m: {
        "clash_sets": [{"name": "self", "a": [{"file": m}]}],
        "output_filename": f"output/real/{Path(m).stem}_clash.json",
    },
    "/ifccsv/ifccsv": lambda m: {
        "filename": m, "query": "IfcElement", "attributes": ["Name", "class"],
        "output_filename": f"output/real/{Path(m).stem}.csv",
    },
    "/ifc2json/ifc2json": lambda m: {"filename": m, "output_filename": f"output/real/{Path(m).stem}.json"},
    "/ifc5d/calculate-qtos": lambda m: {"input_file": m, "output_file": f"output/real/{Path(m).stem}_qto.ifc"},
}


@pytest.fixture(scope="module")
def real_models(data_dir: Path, samples: Path) -> None:
    shutil.copyfile(REPO / "tests/data/ifc/bath-csg-solid.ifc", data_dir / "uploads/bath-csg-solid.ifc")


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("model", MODELS)
async def test_a_real_model_goes_through_whole(
    client: httpx.AsyncClient, real_models: None, model: str, route: str
) -> None:
    response = await client.post(route, json=ROUTES[route](f"uploads/{model}"))
    assert response.status_code == 200, response.text
    result = response.json()
    for report in ("skipped_elements", "elements_without_geometry"):
        if report in result:
            assert result[report] == {"count": 0, "elements": []}, (report, result[report])
    if route == "/ifcconvert/ifcconvert":
        assert result["element_count"] > 0
