"""A model in a schema ifcopenshell reads but has no definitions for is named as such, not as garbage."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from test_ifc_robustness import BODIES, body_for, service_of

from ifcservices.ifcfiles import supported_schemas


@pytest.fixture(scope="module")
def old_schema_models(data_dir: Path) -> None:
    text = (data_dir / "uploads/walls.ifc").read_text(encoding="utf-8")
    for schema in ("IFC2X_FINAL", "IFC4X1"):
        declared = re.sub(r"FILE_SCHEMA\(\('[^']*'\)\)", f"FILE_SCHEMA(('{schema}'))", text)
        assert declared != text
        (data_dir / f"uploads/walls_{schema.lower()}.ifc").write_text(declared, encoding="utf-8")
    (data_dir / "uploads/edit.csv").write_text("GlobalId,Name\n")


def test_the_supported_schemas_are_those_of_ifcopenshell() -> None:
    assert supported_schemas() == ["IFC2X3", "IFC4", "IFC4X3_ADD2"]


@pytest.mark.parametrize("route", list(BODIES))
async def test_an_unsupported_schema_is_named_with_the_supported_ones(
    client: httpx.AsyncClient, old_schema_models: None, route: str
) -> None:
    response = await client.post(route, json=body_for(route, "uploads/walls_ifc2x_final.ifc"))
    assert response.status_code == 422, response.text
    assert response.json()["error"] == {
        "type": "invalid_input",
        "message": "uploads/walls_ifc2x_final.ifc: IFC2X_FINAL is not supported; supported: IFC2X3, IFC4, IFC4X3_ADD2",
        "service": service_of(route),
        "status_code": 422,
    }


async def test_ifc4x1_is_refused_the_same_way(client: httpx.AsyncClient, old_schema_models: None) -> None:
    body = {"filename": "uploads/walls_ifc4x1.ifc", "output_filename": "output/ifc2json/ifc4x1.json"}
    response = await client.post("/ifc2json/ifc2json", json=body)
    assert response.json()["error"]["message"].startswith("uploads/walls_ifc4x1.ifc: IFC4X1 is not supported;")
