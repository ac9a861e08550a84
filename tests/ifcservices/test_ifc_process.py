"""``python -m ifcservices``: real processes, real sockets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from ifcmodels import NDJSON_HEADERS, REPO, free_port

from contracts.operations import SERVICES


def test_all_serves_every_tool_under_its_own_prefix(live_services, data_dir):
    health = httpx.get(f"{live_services}/health").json()
    assert health["status"] == "ok" and sorted(health["services"]) == sorted(SERVICES)
    for name in SERVICES:
        assert httpx.get(f"{live_services}/{name}/health").json()["service"] == name
    body = {"input_filename": "uploads/walls.ifc", "output_filename": "output/ifcconvert/live.glb"}
    with httpx.stream(
        "POST", f"{live_services}/ifcconvert/ifcconvert", json=body, headers=NDJSON_HEADERS, timeout=60
    ) as response:
        assert response.headers["content-type"].startswith("application/x-ndjson")
        events = [json.loads(line) for line in response.iter_lines() if line]
    assert events[0]["event"] == "progress" and events[-1]["event"] == "result"
    assert (data_dir / "output/ifcconvert/live.glb").read_bytes()[:4] == b"glTF"


def test_a_crash_in_the_real_process_leaves_it_serving(live_services):
    body = {"filename": "uploads/walls__segv__.ifc", "output_filename": "output/ifccsv/crash.csv", "query": "IfcWall"}
    crash = httpx.post(f"{live_services}/ifccsv/ifccsv", json=body, timeout=60)
    assert crash.status_code == 500
    assert (
        crash.json()["error"]["message"] == "ifcopenshell crashed while exporting uploads/walls__segv__.ifc: signal 11"
    )
    ok = httpx.post(f"{live_services}/ifccsv/ifccsv", json={**body, "filename": "uploads/walls.ifc"}, timeout=60)
    assert ok.status_code == 200 and ok.json()["rows"] == 4


def wait_until_idle(base: str, service: str) -> None:
    deadline = time.monotonic() + 10
    while httpx.get(f"{base}/{service}/health").json()["active"] != 0:
        assert time.monotonic() < deadline, "the abandoned operation still holds its slot"
        time.sleep(0.1)


def test_a_client_hanging_up_on_a_stream_frees_the_slot_and_kills_the_child(live_services):
    body = {"filename": "uploads/walls__slow20__.ifc", "output_filename": "output/ifc2json/abandoned.json"}
    with httpx.stream(
        "POST", f"{live_services}/ifc2json/ifc2json", json=body, headers=NDJSON_HEADERS, timeout=60
    ) as response:
        lines = response.iter_lines()  # kept: dropping the iterator would close the stream already
        assert json.loads(next(lines))["event"] == "progress"
        assert httpx.get(f"{live_services}/ifc2json/health").json()["active"] == 1
    wait_until_idle(live_services, "ifc2json")


def test_a_client_giving_up_on_a_json_answer_frees_the_slot_too(live_services):
    body = {"filename": "uploads/walls__slow20__.ifc", "output_filename": "output/ifc2json/given-up.json"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{live_services}/ifc2json/ifc2json", json=body, timeout=1.0)
    wait_until_idle(live_services, "ifc2json")


def test_a_single_tool_process_serves_only_that_tool(data_dir):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ifcservices", "ifctester", "--port", str(port), "--data-dir", str(data_dir)],
        cwd=REPO,
        env={**os.environ, "IFCFLOW_LOG_JSON": "true"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert health.json()["service"] == "ifctester"
        body = {
            "ifc_filename": "uploads/walls_rated.ifc",
            "ids_filename": "uploads/fire.ids",
            "output_filename": "output/ifctester/single.json",
        }
        assert httpx.post(f"{base}/ifctester", json=body, timeout=60).json()["status"] is True
        assert httpx.post(f"{base}/ifcconvert", json={}, timeout=10).status_code == 404
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=15)
    assert process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
    lines = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
    assert any(line.get("event") == "operation finished" and line.get("service") == "ifctester" for line in lines)
