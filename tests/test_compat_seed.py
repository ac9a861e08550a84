"""The n8n node n8n-nodes-ifcpipeline 0.6.0 against ifcflow: its requests, built from its source
(``nodes/*/*.node.ts`` with their defaults, ``nodes/shared/GenericFunctions.ts``), sent to the session's
real gateway and worker (the stand-in service answering as ifcflow's tools do), and the answers checked
against the shapes ifcpipeline gave (``api-gateway.py``'s ``JobStatusResponse``, its upload answer, its
workers' results). tests/ifcservices/test_compat_node_flows.py replays them on the real IFC services.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from tests.conftest import Behaviour, submit

pytestmark = pytest.mark.asyncio

# ifcpipeline's JobStatusResponse, field for field.
SEED_STATUS_KEYS = {
    "job_id", "status", "result", "error", "progress", "execution_time_seconds", "created_at", "started_at", "ended_at",
}

# Each node's request with the node's defaults; files as its dropdowns list them (GET /list_directories
# answers "/uploads/<name>"), outputs as its placeholders suggest.
NODE_REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "IfcConversion.convertIfc": ("/ifcconvert", {
        "input_filename": "/uploads/model.ifc", "output_filename": "/output/glb/Building-Architecture.glb"}),
    "IfcCsv.exportToCsv": ("/ifccsv", {
        "filename": "/uploads/model.ifc", "output_filename": "/output/csv/Building-Architecture_export.csv"}),
    "IfcCsv.importFromCsv": ("/ifccsv/import", {
        "ifc_filename": "/uploads/model.ifc", "csv_filename": "/uploads/edits.csv"}),
    "IfcClash.detectClashes": ("/ifcclash", {
        "clash_sets": [{"name": "Clash Set 1", "a": [{"file": "/uploads/model.ifc", "mode": "e"}],
                        "b": [{"file": "/uploads/model.ifc", "mode": "e"}]}],
        "output_filename": "clash_report.bcf"}),
    "IfcTester.validateIfc": ("/ifctester", {
        "ifc_filename": "/uploads/model.ifc", "ids_filename": "/uploads/rules.ids",
        "output_filename": "/output/reports/validation_report.json", "report_type": "json"}),
    "IfcDiff.compareIfcFiles": ("/ifcdiff", {
        "old_file": "/uploads/model.ifc", "new_file": "/uploads/model.ifc", "output_file": "diff.json",
        "is_shallow": True}),
    "IfcToJson.convertToJson": ("/ifc2json", {
        "filename": "/uploads/model.ifc", "output_filename": "/output/json/Building-Architecture.json"}),
    "IfcQuantityTakeoff.calculateQuantities": ("/calculate-qtos", {"input_file": "/uploads/model.ifc"}),
}
# Where ifcflow puts each request's main output, and the result its tool answers with.
TOOL_RESULTS: dict[str, dict[str, Any]] = {
    "/ifcconvert": {"output_files": ["output/ifcconvert/glb/Building-Architecture.glb"], "format": "glb",
                    "size_bytes": 10, "input_size_bytes": 30, "element_count": 1, "ignored_options": []},
    "/ifccsv": {"output_files": ["output/ifccsv/csv/Building-Architecture_export.csv"], "format": "csv", "rows": 1,
                "headers": ["GlobalId", "Name", "Description"]},
    "/ifccsv/import": {"output_files": ["output/ifccsv/model_updated.ifc"], "rows": 1, "rows_matched": 1,
                       "unknown_global_ids": []},
    "/ifcclash": {"output_files": ["output/ifcclash/clash_report.bcf"], "clash_count": 0,
                  "clash_sets": [{"name": "Clash Set 1", "clash_count": 0, "clashes": []}]},
    "/ifctester": {"output_files": ["output/ifctester/reports/validation_report.json"], "report_type": "json",
                   "status": True, "passed": 1, "failed": 0, "checks_passed": 1, "checks_failed": 0,
                   "specifications": []},
    "/ifcdiff": {"output_files": ["output/ifcdiff/diff.json"], "added_count": 0, "deleted_count": 0,
                 "changed_count": 0, "added": [], "deleted": [], "changed": {}},
    "/ifc2json": {"output_files": ["output/ifc2json/json/Building-Architecture.json"], "schema": "IFC4",
                  "entity_count": 1},
    "/calculate-qtos": {"output_files": ["output/ifc5d/model_qto.ifc"], "rule_set": "IFC4QtoBaseQuantities",
                        "elements_quantified": 0, "quantity_sets": {}},
}
# What ifcpipeline's worker of each operation put in its result beyond success/message/output_path.
RQ_RESULT_KEYS: dict[str, set[str]] = {
    "/ifcconvert": {"log_file", "stdout", "stderr", "execution_time", "input_size_bytes", "output_size_bytes"},
    "/ifccsv": {"storage"},
    "/ifccsv/import": {"storage"},
    "/ifcclash": {"warning", "result", "clash_count"},
    "/ifctester": {"total_specifications", "passed_specifications", "failed_specifications", "storage"},
    "/ifcdiff": {"summary"},
    "/ifc2json": set(),
    "/calculate-qtos": set(),
}


async def poll_for_job_completion(api: httpx.AsyncClient, job_id: str, timeout: float = 30) -> dict[str, Any]:
    """GenericFunctions.ts' pollForJobCompletion: GET /jobs/{id}/status until finished (or failed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = (await api.get(f"/jobs/{job_id}/status")).json()
        if status["status"] == "finished":
            return dict(status)
        if status["status"] == "failed":
            raise AssertionError(f"Job failed: {status['error'] or 'Unknown error'}")
        await asyncio.sleep(0.05)  # the node waits pollingInterval seconds; the stand-in is fast
    raise AssertionError(f"Job timeout exceeded after {timeout} seconds")


def node_upload(name: str, content: bytes, mime: str) -> dict[str, Any]:
    """The node's uploadFile: formData {file: {value, options: {filename, contentType}}}."""
    return {"files": {"file": (name, content, mime)}}


async def test_every_nodes_default_request_waits_to_finished_with_the_rq_result(api, worker, stub, data_dir):
    (data_dir / "uploads" / "edits.csv").write_text("GlobalId,Name\n")
    for node, (path, body) in NODE_REQUESTS.items():
        stub.will(path, Behaviour(body=TOOL_RESULTS[path]))
        r = await api.post(path, json=body)
        assert r.status_code == 202, (node, r.text)
        status = await poll_for_job_completion(api, r.json()["job_id"])
        assert set(status) == SEED_STATUS_KEYS, node
        result = status["result"]
        assert result["success"] is True, node
        assert result["output_path"] == "/" + TOOL_RESULTS[path]["output_files"][0], node
        assert isinstance(result["message"], str) and result["message"], node
        assert RQ_RESULT_KEYS[path] <= set(result), (node, sorted(result))
        assert status["execution_time_seconds"] >= 0 and status["created_at"] and status["ended_at"]


async def test_the_rq_paths_reach_the_service_mapped_into_the_data_dir(api, worker, stub, data_dir):
    (data_dir / "uploads" / "edits.csv").write_text("GlobalId,Name\n")
    sent = {}
    for path, body in NODE_REQUESTS.values():
        stub.will(path, Behaviour(body=TOOL_RESULTS[path]))
        job_id = await submit(api, path, body)
        await poll_for_job_completion(api, job_id)
        sent[path] = stub.calls_to(path)[-1]["body"]
    assert sent["/ifcconvert"]["input_filename"] == "uploads/model.ifc"
    assert sent["/ifcconvert"]["output_filename"] == "output/ifcconvert/glb/Building-Architecture.glb"
    assert sent["/ifccsv/import"]["csv_filename"] == "uploads/edits.csv"
    assert sent["/ifcclash"]["clash_sets"][0]["a"][0]["file"] == "uploads/model.ifc"
    assert sent["/ifcclash"]["output_filename"] == "output/ifcclash/clash_report.bcf"
    assert sent["/ifctester"]["output_filename"] == "output/ifctester/reports/validation_report.json"
    assert sent["/calculate-qtos"]["output_file"] == "output/ifc5d/model_qto.ifc"


async def test_a_failed_job_answers_failed_with_its_error_as_one_string(api, worker, stub):
    stub.will("/ifcconvert", Behaviour(status=422, body={"error": {"type": "invalid_input",
                                                                    "message": "model.ifc is not a valid IFC file"}}))
    path, body = NODE_REQUESTS["IfcConversion.convertIfc"]
    job_id = await submit(api, path, body)
    with pytest.raises(AssertionError, match=r"^Job failed: \w+: model.ifc is not a valid IFC file$"):
        await poll_for_job_completion(api, job_id)
    status = (await api.get(f"/jobs/{job_id}/status")).json()
    assert status["status"] == "failed" and isinstance(status["error"], str) and status["result"] is None
    # ifcflow's own view of the same record keeps its shape.
    own = (await api.get(f"/jobs/{job_id}")).json()
    assert own["status"] == "failed" and own["error"]["message"] == "model.ifc is not a valid IFC file"


async def test_the_upload_answer_has_the_rq_keys_and_its_file_path_chains_into_the_next_request(api, worker, stub):
    r = await api.post("/upload/ifc", **node_upload("Building Architecture (rev 2).ifc", b"ISO-10303-21;",
                                                    "application/x-step"))
    assert r.status_code == 201, r.text
    answer = r.json()
    assert answer["message"] == "IFC file Building Architecture (rev 2).ifc uploaded successfully"
    assert answer["original_filename"] == "Building Architecture (rev 2).ifc"
    assert answer["file_path"] == "/uploads/Building_Architecture_rev_2.ifc"  # ifcpipeline's safe name
    assert answer["filename"] == "Building_Architecture_rev_2.ifc"
    assert answer["path"] == "uploads/Building_Architecture_rev_2.ifc"
    # A flow sends $json.file_path on as the next node's input.
    stub.will("/ifc2json", Behaviour(body=TOOL_RESULTS["/ifc2json"]))
    job_id = await submit(api, "/ifc2json", {"filename": answer["file_path"], "output_filename": "b.json"})
    status = await poll_for_job_completion(api, job_id)
    assert status["result"]["output_path"].startswith("/output/")
    assert stub.calls_to("/ifc2json")[-1]["body"]["filename"] == "uploads/Building_Architecture_rev_2.ifc"


async def test_csv_and_ids_uploads_work(api):
    r = await api.post("/upload/csv", **node_upload("edits.csv", b"GlobalId,Name\n", "text/csv"))
    assert r.status_code == 201 and r.json()["file_path"] == "/uploads/edits.csv"
    r = await api.post("/upload/ids", **node_upload("rules.ids", b"<ids/>", "application/xml"))
    assert r.status_code == 201 and r.json()["message"] == "IDS file rules.ids uploaded successfully"


async def test_a_later_job_is_scheduled_and_a_cancelled_one_canceled(api, sync_redis):
    path, body = NODE_REQUESTS["IfcToJson.convertToJson"]
    job_id = await submit(api, path, {**body, "defer_by": 3600})
    assert (await api.get(f"/jobs/{job_id}/status")).json()["status"] == "scheduled"
    assert (await api.delete(f"/jobs/{job_id}")).status_code == 202
    assert (await api.get(f"/jobs/{job_id}/status")).json()["status"] == "canceled"


@pytest.mark.parametrize(
    "path,body,field",
    [
        ("/ifcconvert", {"use_world_cords": True}, "use_world_cords"),  # a typo is no longer run with defaults
        ("/ifcconvert", {"center_model": True}, "center_model"),  # ifcopenshell 0.9 cannot
        ("/ifcconvert", {"input_version_id": "v1"}, "input_version_id"),  # no object storage versions
        ("/ifcconvert", {"model_offset": "1;2"}, "model_offset"),
        ("/ifcconvert", {"input_filename": "/etc/passwd"}, "input_filename"),
        ("/ifccsv", {"groups": [{"name": "Level", "type": "GROUP"}]}, "groups"),  # not one of the attributes
        ("/ifccsv", {"sort": [{"name": "Name", "order": "UP"}]}, "sort"),
        ("/ifcdiff", {"old_version_id": "v1"}, "old_version_id"),
        ("/ifctester", {"report_type": "xlsx"}, "report_type"),  # neither ifcpipeline nor ifctester writes it
    ],
)
async def test_fields_that_cannot_be_honoured_get_422_naming_them(api, sync_redis, path, body, field):
    base = next(b for p, b in NODE_REQUESTS.values() if p == path)
    r = await api.post(path, json={**base, **body})
    assert r.status_code == 422, r.text
    assert field in r.text and "Traceback" not in r.text
    assert sync_redis.zcard("arq:queue") == 0


async def test_every_rq_field_and_ifcflows_own_options_are_accepted(api, sync_redis):
    convert = {**NODE_REQUESTS["IfcConversion.convertIfc"][1], "verbose": True, "quiet": True, "yes": True,
               "validate": True, "threads": 2, "kernel": "opencascade", "include": ["IfcWall"],
               "include_type": "entities", "mesher_linear_deflection": 0.01, "model_offset": "0;0;1",
               "use_element_guids": True, "y_up": True, "digits": 8, "log_file": "/output/converted/a.txt",
               "log_format": "json", "cache": True, "priority": "high", "defer_by": 60}
    csv = {**NODE_REQUESTS["IfcCsv.exportToCsv"][1], "attributes": ["Name", "class"], "null": "N/A",
           "headers": ["Name", None], "groups": [{"name": "class", "type": "group"}],
           "sort": [{"name": "Name", "order": "DESC"}], "summaries": [{"name": "Name", "type": "MAX"}],
           "formatting": [{"name": "Name", "format": "upper({{value}})"}], "include_global_id": False,
           "format": "xlsx"}
    for path, body in (("/ifcconvert", convert), ("/ifccsv", csv)):
        r = await api.post(path, json=body)
        assert r.status_code == 202, (path, r.text)
    job = (await api.get(f"/jobs/{r.json()['job_id']}")).json()
    assert job["arguments"]["groups"] == [{"name": "class", "type": "GROUP", "varies_value": "VARIES"}]
    assert sync_redis.zcard("arq:queue") == 2


async def test_rq_only_fields_at_their_defaults_are_not_recorded(api):
    path, body = NODE_REQUESTS["IfcConversion.convertIfc"]
    job_id = await submit(api, path, body)
    arguments = (await api.get(f"/jobs/{job_id}")).json()["arguments"]
    assert "svg_poly" not in arguments and "input_version_id" not in arguments
    assert arguments["verbose"] is True and arguments["input_filename"] == "uploads/model.ifc"
