"""The RQ system's status view (store/seed_view.py) of ifcflow job views: status words, error text,
timings, and each operation's result as ifcpipeline's workers returned it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts.wire import ErrorInfo
from store.job_view import JobStatus, JobView, Progress
from store.seed_view import SeedStatus, seed_view

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


def view(status: JobStatus, operation: str = "ifcconvert", *, started: bool = True, finished: bool = True,
         result: dict[str, Any] | None = None, arguments: dict[str, Any] | None = None,
         error: ErrorInfo | None = None) -> JobView:
    return JobView(
        job_id="j1", operation=operation, status=status, enqueued_at=T0,
        started_at=T0 + timedelta(seconds=1) if started else None,
        finished_at=T0 + timedelta(seconds=3.5) if finished else None,
        result=result, arguments=arguments, error=error,
    )


@pytest.mark.parametrize(
    "status,started,word",
    [
        (JobStatus.queued, False, SeedStatus.queued),
        (JobStatus.deferred, False, SeedStatus.scheduled),  # defer_by/defer_until, or a retry's wait
        (JobStatus.in_progress, True, SeedStatus.started),
        (JobStatus.complete, True, SeedStatus.finished),
        (JobStatus.failed, True, SeedStatus.failed),
        (JobStatus.aborted, False, SeedStatus.canceled),  # cancelled before it started
        (JobStatus.aborted, True, SeedStatus.stopped),  # aborted while running
    ],
)
def test_every_ifcflow_status_has_its_rq_word(status: JobStatus, started: bool, word: SeedStatus) -> None:
    assert seed_view(view(status, started=started, finished=False)).status is word


def test_timings_and_progress_are_the_rq_fields() -> None:
    v = view(JobStatus.in_progress, finished=False).model_copy(update={"progress": Progress(percent=40, phase="x")})
    seed = seed_view(v)
    assert (seed.created_at, seed.started_at, seed.ended_at) == (T0, T0 + timedelta(seconds=1), None)
    assert seed.execution_time_seconds is None and seed.progress == {"percent": 40, "phase": "x"}
    done = seed_view(view(JobStatus.complete, result={"output_files": ["output/ifcconvert/a.glb"]}))
    assert done.execution_time_seconds == 2.5 and done.ended_at == T0 + timedelta(seconds=3.5)


def test_a_failed_jobs_error_is_one_string() -> None:
    error = ErrorInfo(type="invalid_input", message="uploads/a.ifc is not a valid IFC file", service="ifcconvert")
    seed = seed_view(view(JobStatus.failed, error=error))
    assert seed.error == "invalid_input: uploads/a.ifc is not a valid IFC file"
    assert seed.result is None


def test_results_carry_success_and_an_output_path_accepted_back_as_input() -> None:
    result = {"output_files": ["output/ifcconvert/a.glb", "output/ifcconvert/a.log"], "format": "glb",
              "size_bytes": 10, "input_size_bytes": 99, "element_count": 3, "ignored_options": []}
    seed = seed_view(view(JobStatus.complete, result=result, arguments={"log_file": "output/ifcconvert/a.log"}))
    assert seed.result is not None
    assert seed.result["success"] is True and seed.result["storage"] == "filesystem"
    assert seed.result["output_path"] == "/output/ifcconvert/a.glb"
    assert seed.result["message"] == "File converted successfully to /output/ifcconvert/a.glb"
    assert seed.result["log_file"] == "/output/ifcconvert/a.log"
    assert (seed.result["input_size_bytes"], seed.result["output_size_bytes"]) == (99, 10)
    assert seed.result["execution_time"] == 2.5
    assert seed.result["element_count"] == 3  # ifcflow's own keys stay


def test_tester_results_have_the_rq_specification_counts_and_html_its_report() -> None:
    result = {"output_files": ["output/ifctester/r.json"], "passed": 2, "failed": 1, "status": False}
    seed = seed_view(view(JobStatus.complete, "ifctester", result=result))
    assert seed.result is not None
    assert (seed.result["total_specifications"], seed.result["passed_specifications"],
            seed.result["failed_specifications"]) == (3, 2, 1)
    html = seed_view(view(JobStatus.complete, "ifctester", result=result), report="<html></html>")
    assert html.result is not None and html.result["report"] == "<html></html>"


def test_clash_results_have_ifcclashs_report_keyed_by_element_pairs() -> None:
    clash = {"a_global_id": "A", "b_global_id": "B", "a_ifc_class": "IfcWall", "b_ifc_class": "IfcWall",
             "a_name": "a", "b_name": "b", "type": "protrusion", "distance": -0.1, "p1": [0, 0, 0], "p2": [1, 1, 1]}
    result = {"output_files": ["output/ifcclash/c.json"], "clash_count": 1,
              "clash_sets": [{"name": "s", "clash_count": 1, "clashes": [clash]}]}
    arguments = {"clash_sets": [{"name": "s", "a": [{"file": "uploads/w.ifc", "mode": "e", "selector": None}],
                                 "b": []}], "tolerance": 0.01, "mode": "intersection", "check_all": False,
                 "allow_touching": False, "clearance": 0.0}
    seed = seed_view(view(JobStatus.complete, "ifcclash", result=result, arguments=arguments))
    assert seed.result is not None
    assert seed.result["clash_count"] == 1 and seed.result["warning"] is False
    [report] = seed.result["result"]
    assert report["name"] == "s" and report["mode"] == "intersection" and report["tolerance"] == 0.01
    assert report["a"] == [{"file": "/uploads/w.ifc", "mode": "e", "selector": None}]
    assert report["clashes"] == {"A-B": clash}


@pytest.mark.parametrize(
    "operation,result,keys",
    [
        ("ifccsv", {"format": "xlsx"}, {"message": "Successfully converted to XLSX"}),
        ("ifccsv_import", {}, {"message": "Data changes successfully imported to IFC model"}),
        ("ifcdiff", {"added_count": 1, "deleted_count": 0, "changed_count": 2},
         {"summary": {"added": 1, "deleted": 0, "changed": 2}}),
        ("ifc2json", {}, {"message": "File converted successfully to JSON."}),
        ("calculate_qtos", {}, {"message": "Quantities calculated and inserted. Results saved to /output/x/y"}),
        ("ifcpatch", {}, {"success": True, "output_path": "/output/x/y"}),  # any other operation: the common keys
    ],
)
def test_each_operation_has_its_rq_workers_keys(operation: str, result: dict[str, Any], keys: dict[str, Any]) -> None:
    seed = seed_view(view(JobStatus.complete, operation, result={"output_files": ["output/x/y"], **result}))
    assert seed.result is not None
    assert {k: seed.result[k] for k in keys} == keys
    assert seed.result["success"] is True and seed.result["output_path"] == "/output/x/y"
