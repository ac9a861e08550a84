"""ifccsv: export to CSV, XLSX and ODS, and edits imported back into a new IFC file."""

from __future__ import annotations

import csv

import ifcopenshell
import pandas as pd
from ifcmodels import guid_of


async def test_csv_export_has_one_row_per_selected_element(client, data_dir):
    body = {
        "filename": "uploads/walls.ifc",
        "output_filename": "output/ifccsv/walls.csv",
        "query": "IfcWall",
        "attributes": ["Name", "Pset_WallCommon.FireRating"],
        "null": "n/a",
    }
    response = await client.post("/ifccsv/ifccsv", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["rows"] == 4
    assert result["headers"] == ["GlobalId", "Name", "Pset_WallCommon.FireRating"]
    with (data_dir / "output/ifccsv/walls.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["Name"]: row["Pset_WallCommon.FireRating"] for row in rows} == {
        "A": "REI60",
        "B": "n/a",
        "C": "n/a",
        "D": "n/a",
    }
    assert {row["GlobalId"] for row in rows} == {guid_of(data_dir / "uploads/walls.ifc", n) for n in "ABCD"}


async def test_sample_walls_export_to_xlsx_and_ods(client, samples, data_dir):
    for fmt, engine in (("xlsx", "openpyxl"), ("ods", "odf")):
        body = {
            "filename": "uploads/AC20-FZK-Haus.ifc",
            "output_filename": f"output/ifccsv/walls.{fmt}",
            "format": fmt,
            "query": "IfcWall",
            "attributes": ["Name", "class"],
        }
        response = await client.post("/ifccsv/ifccsv", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["rows"] == 13  # the sample's thirteen walls
        table = pd.read_excel(data_dir / f"output/ifccsv/walls.{fmt}", engine=engine)
        assert list(table.columns) == ["GlobalId", "Name", "class"]
        assert set(table["class"]) == {"IfcWallStandardCase"} and len(table) == 13


async def test_edited_csv_imports_back_into_a_new_ifc(client, data_dir):
    body = {"filename": "uploads/walls.ifc", "output_filename": "uploads/edit.csv", "query": "IfcWall"}
    assert (await client.post("/ifccsv/ifccsv", json=body)).status_code == 200
    rows = (data_dir / "uploads/edit.csv").read_text().splitlines()
    rows = [row.replace(",C,", ",Column line C,") for row in rows] + ["0000000000000000000000,Ghost,-"]
    (data_dir / "uploads/edit.csv").write_text("\n".join(rows) + "\n")
    body = {
        "ifc_filename": "uploads/walls.ifc",
        "csv_filename": "uploads/edit.csv",
        "output_filename": "output/ifccsv/walls_edited.ifc",
    }
    response = await client.post("/ifccsv/ifccsv/import", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["rows"] == 5 and result["rows_matched"] == 4
    assert result["unknown_global_ids"] == ["0000000000000000000000"]
    edited = ifcopenshell.open(str(data_dir / "output/ifccsv/walls_edited.ifc"))
    assert sorted(w.Name for w in edited.by_type("IfcWall")) == ["A", "B", "Column line C", "D"]
    original = ifcopenshell.open(str(data_dir / "uploads/walls.ifc"))
    assert "C" in {w.Name for w in original.by_type("IfcWall")}  # the input is left as it was


async def test_a_query_that_does_not_parse_is_a_422(client):
    body = {"filename": "uploads/walls.ifc", "output_filename": "output/ifccsv/x.csv", "query": "IfcWall, ["}
    response = await client.post("/ifccsv/ifccsv", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("query 'IfcWall, [' is not a valid selector")
