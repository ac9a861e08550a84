"""The n8n node's flows on the real pipeline (gateway -> worker -> IFC services): its requests with its
defaults and ifcpipeline's paths, waited for as its pollForJobCompletion does, answers read as its
workflows read them (``$json.file_path``, ``$json.result.output_path``)."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from ifcmodels import guid_of
from live_env import live_env

from tests.conftest import submit, until_seed_ended


@pytest.fixture
def env(redis_url, data_dir: Path, live_services: str) -> dict[str, str]:
    """The real services (one `python -m ifcservices all` process) behind the gateway and worker."""
    return live_env(redis_url, data_dir, live_services)


@pytest.fixture
def api(worker, api):
    return api


async def node_run(api: httpx.AsyncClient, path: str, body: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    """A node's submit, then pollForJobCompletion on /jobs/{id}/status: the answer the node outputs."""
    return await until_seed_ended(api, await submit(api, path, body), timeout)


async def download(api: httpx.AsyncClient, output_path: str) -> bytes:
    r = await api.get(f"/files{output_path}")  # output_path is "/output/..."
    assert r.status_code == 200, r.text
    return r.content


async def test_upload_then_convert_with_the_nodes_placeholder_output(api, data_dir):
    walls = (data_dir / "uploads" / "walls.ifc").read_bytes()
    uploaded = (await api.post("/upload/ifc", files={"file": ("Walls Model.ifc", walls, "application/x-step")})).json()
    assert uploaded["file_path"] == "/uploads/Walls_Model.ifc"
    status = await node_run(api, "/ifcconvert", {"input_filename": uploaded["file_path"],
                                                  "output_filename": "/output/glb/Building-Architecture.glb"})
    assert status["status"] == "finished", status
    result = status["result"]
    assert result["success"] is True and result["output_path"] == "/output/ifcconvert/glb/Building-Architecture.glb"
    assert result["output_size_bytes"] > 0 and result["input_size_bytes"] == len(walls)
    magic, version, _ = struct.unpack("<4sII", (await download(api, result["output_path"]))[:12])
    assert (magic, version) == (b"glTF", 2)


async def test_convert_flags_of_ifcconvert_run_on_ifcopenshell_09(api, data_dir):
    walls = data_dir / "uploads" / "walls.ifc"
    body = {"input_filename": "/uploads/walls.ifc", "output_filename": "two.obj", "include_type": "attribute",
            "include": ["GlobalId", guid_of(walls, "A"), guid_of(walls, "B")], "use_element_guids": True,
            "mesher_linear_deflection": 0.01, "y_up": True, "yes": True, "log_file": "/output/converted/two.log",
            "log_format": "json"}
    status = await node_run(api, "/ifcconvert", body)
    assert status["status"] == "finished", status
    assert status["result"]["element_count"] == 2
    assert status["result"]["ignored_options"] == ["yes"]
    assert status["result"]["log_file"] == "/output/ifcconvert/converted/two.log"
    log = (await download(api, status["result"]["log_file"])).decode()
    messages = [json.loads(line)["message"] for line in log.splitlines()]  # --log-format json
    assert messages[0].startswith("converted 2 elements") and messages[1].startswith("ignored yes:")
    failed = await node_run(api, "/ifcconvert", {**body, "kernel": "no-such-kernel", "output_filename": "k.obj"})
    assert failed["status"] == "failed" and "kernel" in failed["error"]


async def test_csv_export_to_an_rq_path_then_import_from_it(api):
    export = await node_run(api, "/ifccsv", {"filename": "/uploads/walls.ifc", "output_filename": "walls.csv"})
    assert export["status"] == "finished", export
    assert export["result"]["output_path"] == "/output/ifccsv/walls.csv"
    assert export["result"]["message"] == "Successfully converted to CSV"
    # An RQ-era flow names the export where ifcpipeline put it: /output/csv/<name>.
    imported = await node_run(api, "/ifccsv/import", {"ifc_filename": "/uploads/walls.ifc",
                                                      "csv_filename": "/output/csv/walls.csv"})
    assert imported["status"] == "finished", imported
    assert imported["result"]["output_path"] == "/output/ifccsv/walls_updated.ifc"
    chained = await node_run(api, "/ifccsv/import", {"ifc_filename": "/uploads/walls.ifc",
                                                     "csv_filename": export["result"]["output_path"],
                                                     "output_filename": "/output/ifc/chained.ifc"})
    assert chained["status"] == "finished" and chained["result"]["output_path"] == "/output/ifccsv/ifc/chained.ifc"


async def test_csv_groups_sort_and_formatting_shape_the_table(api):
    body = {"filename": "/uploads/walls.ifc", "output_filename": "grouped.csv", "query": "IfcWall",
            "attributes": ["class", "Name"], "include_global_id": False, "headers": ["Class"],
            "groups": [{"name": "class", "type": "GROUP"}, {"name": "Name", "type": "CONCAT"}],
            "sort": [{"name": "class", "order": "ASC"}],
            "formatting": [{"name": "class", "format": "lower({{value}})"}]}
    status = await node_run(api, "/ifccsv", body)
    assert status["status"] == "finished", status
    rows = (await download(api, status["result"]["output_path"])).decode().splitlines()
    assert rows[0] == "Class,Name"
    assert rows[1].startswith("ifcwall,") and sorted(rows[1].split(",", 1)[1].strip('"').split(", ")) == [
        "A", "B", "C", "D"]
    # A summary ifccsv cannot compute (MAX of names) fails the job naming what was asked, not a crash.
    failed = await node_run(api, "/ifccsv", {**body, "output_filename": "s.csv",
                                             "summaries": [{"name": "Name", "type": "MAX"}]})
    assert failed["status"] == "failed" and failed["error"].startswith("invalid_input: groups, sort, summaries")


async def test_tester_json_and_html_answers_have_the_rq_keys(api):
    body = {"ifc_filename": "/uploads/walls.ifc", "ids_filename": "/uploads/fire.ids",
            "output_filename": "/output/reports/validation_report.json", "report_type": "json"}
    status = await node_run(api, "/ifctester", body)
    assert status["status"] == "finished", status
    result = status["result"]
    assert (result["total_specifications"], result["passed_specifications"], result["failed_specifications"]) == (
        1, 0, 1)
    html = await node_run(api, "/ifctester", {**body, "report_type": "html",
                                              "output_filename": "/output/reports/validation_report.html"})
    assert html["status"] == "finished", html
    assert html["result"]["report"].lstrip().lower().startswith("<!doctype html") or "<html" in html["result"]["report"]
    assert html["result"]["output_path"] == "/output/ifctester/reports/validation_report.html"


async def test_clash_with_the_nodes_bcf_placeholder_writes_bcf_xml_21(api, data_dir):
    body = {"clash_sets": [{"name": "Clash Set 1", "a": [{"file": "/uploads/walls.ifc", "mode": "e"}], "b": []}],
            "output_filename": "clash_report.bcf"}
    status = await node_run(api, "/ifcclash", body)
    assert status["status"] == "finished", status
    result = status["result"]
    assert result["output_path"] == "/output/ifcclash/clash_report.bcf" and result["clash_count"] == 1
    [clash_set] = result["result"]
    [(pair, clash)] = clash_set["clashes"].items()
    walls = data_dir / "uploads" / "walls.ifc"
    assert {clash["a_global_id"], clash["b_global_id"]} == {guid_of(walls, "A"), guid_of(walls, "B")}
    assert pair == f"{clash['a_global_id']}-{clash['b_global_id']}"
    with zipfile.ZipFile(io.BytesIO(await download(api, result["output_path"]))) as bcf:
        names = bcf.namelist()
        assert 'VersionId="2.1"' in bcf.read("bcf.version").decode()
        markups = [n for n in names if n.endswith("markup.bcf")]
        assert len(markups) == 1
        markup = bcf.read(markups[0]).decode()
        assert "IfcWall/A and IfcWall/B" in markup or "IfcWall/B and IfcWall/A" in markup
        assert any(n.endswith(".bcfv") for n in names)


async def test_diff_json_and_qto_answers_have_the_rq_keys(api):
    diff = await node_run(api, "/ifcdiff", {"old_file": "/uploads/walls.ifc", "new_file": "/uploads/walls_rated.ifc",
                                            "output_file": "diff.json", "is_shallow": True})
    assert diff["status"] == "finished", diff
    assert set(diff["result"]["summary"]) == {"added", "deleted", "changed"}
    assert diff["result"]["output_path"] == "/output/ifcdiff/diff.json"
    converted = await node_run(api, "/ifc2json", {"filename": "/uploads/walls.ifc",
                                                  "output_filename": "/output/json/walls.json"})
    assert converted["status"] == "finished"
    assert converted["result"]["message"] == "File converted successfully to JSON."
    assert json.loads(await download(api, converted["result"]["output_path"]))["entities"]
    qto = await node_run(api, "/calculate-qtos", {"input_file": "/uploads/walls.ifc"})
    assert qto["status"] == "finished" and qto["result"]["output_path"] == "/output/ifc5d/walls_qto.ifc"
