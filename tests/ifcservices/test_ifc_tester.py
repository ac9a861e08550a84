"""ifctester: an IDS requiring a fire rating, against walls with and without one."""

from __future__ import annotations

import json
import zipfile

from ifcmodels import guid_of


def ids_check(ifc: str, output: str, report_type: str = "json"):
    return {
        "ifc_filename": ifc,
        "ids_filename": "uploads/fire.ids",
        "output_filename": output,
        "report_type": report_type,
    }


async def test_walls_without_the_required_property_fail(client, data_dir):
    response = await client.post("/ifctester/ifctester", json=ids_check("uploads/walls.ifc", "output/ifctester/r.json"))
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["status"], result["passed"], result["failed"]) == (False, 0, 1)
    assert (result["checks_passed"], result["checks_failed"]) == (1, 3)
    [spec] = result["specifications"]
    walls = data_dir / "uploads/walls.ifc"
    assert {f["global_id"] for f in spec["failures"]} == {guid_of(walls, n) for n in "BCD"}
    assert {f["reason"] for f in spec["failures"]} == {"The required property set does not exist"}
    report = json.loads((data_dir / "output/ifctester/r.json").read_text())
    assert report["status"] is False and report["total_checks_fail"] == 3


async def test_walls_that_all_carry_the_property_pass(client):
    response = await client.post(
        "/ifctester/ifctester", json=ids_check("uploads/walls_rated.ifc", "output/ifctester/ok.json")
    )
    result = response.json()
    assert (result["status"], result["passed"], result["failed"], result["checks_failed"]) == (True, 1, 0, 0)
    assert result["specifications"][0]["failures"] == []


async def test_html_and_bcf_reports(client, data_dir):
    html = await client.post(
        "/ifctester/ifctester", json=ids_check("uploads/walls.ifc", "output/ifctester/r.html", "html")
    )
    assert html.status_code == 200, html.text
    page = (data_dir / "output/ifctester/r.html").read_text()
    assert "<html" in page.lower() and "Wall fire rating" in page
    bcf = await client.post(
        "/ifctester/ifctester", json=ids_check("uploads/walls.ifc", "output/ifctester/r.bcf", "bcf")
    )
    assert bcf.status_code == 200, bcf.text
    with zipfile.ZipFile(data_dir / "output/ifctester/r.bcf") as archive:
        topics = [name for name in archive.namelist() if name.endswith("markup.bcf")]
    assert len(topics) == 3  # one topic per failing wall


async def test_a_broken_ids_file_is_a_422(client):
    body = {**ids_check("uploads/walls.ifc", "output/ifctester/x.json"), "ids_filename": "uploads/garbage.ifc"}
    response = await client.post("/ifctester/ifctester", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("uploads/garbage.ifc is not a valid IDS file:")
