"""Workflows with real gateway, workers and Redis: data dependencies, failure, cancel, restarts."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest
import websockets

from tests.conftest import API_KEY, CONVERT, Behaviour, eventually, start_worker


def three_steps():
    """convert -> clash on the converted file -> json of the clash input: a chain with data dependencies."""
    return {
        "steps": [
            {"id": "convert", "operation": "ifcconvert", "arguments": CONVERT},
            {"id": "clash", "operation": "ifcclash", "arguments": {
                "clash_sets": [{"name": "s", "a": [{"file": "${convert.output_files.0}"}]}],
                "output_filename": "clash.json"}},
            {"id": "report", "operation": "ifc2json", "arguments": {
                "filename": "${clash.checked}", "output_filename": "report-${clash.clash_count}.json"}},
        ]
    }


def outputs_exist(data_dir, *paths):
    for p in paths:
        (data_dir / p).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / p).write_text("x")


async def until(api, workflow_id, statuses=("complete", "failed", "cancelled"), timeout=30.0, steps=None):
    """Poll the workflow until its status is one of ``statuses`` (and its steps', if given, are ``steps``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        wf = (await api.get(f"/workflows/{workflow_id}")).json()
        if wf["status"] in statuses and (steps is None or [s["status"] for s in wf["steps"]] == steps):
            return wf
        await asyncio.sleep(0.05)
    raise AssertionError(wf)


async def test_a_three_step_workflow_passes_each_output_to_the_next_step(api, worker, stub, data_dir):
    outputs_exist(data_dir, "output/ifcconvert/model.glb", "output/ifcclash/clash.json")
    stub.will("/ifcconvert", Behaviour(body={"output_files": ["output/ifcconvert/model.glb"]}))
    stub.will("/ifcclash", Behaviour(body={"clash_count": 2, "checked": "output/ifcclash/clash.json"}))
    stub.will("/ifc2json", Behaviour(body={"entity_count": 9}))
    r = await api.post("/workflows", json=three_steps())
    assert r.status_code == 202, r.text
    wf = await until(api, r.json()["workflow_id"])
    assert wf["status"] == "complete", wf
    assert [s["status"] for s in wf["steps"]] == ["complete"] * 3
    assert stub.calls_to("/ifcclash")[0]["body"]["clash_sets"][0]["a"][0]["file"] == "output/ifcconvert/model.glb"
    report = stub.calls_to("/ifc2json")[0]["body"]
    assert report["filename"] == "output/ifcclash/clash.json"
    assert report["output_filename"] == "output/ifc2json/report-2.json"
    assert wf["steps"][2]["depends_on"] == ["clash"]


async def test_a_failed_step_skips_its_dependants_and_fails_the_workflow(api, worker, stub):
    stub.will("/ifcconvert", Behaviour(status=422, body={"detail": "not an IFC file"}))
    workflow_id = (await api.post("/workflows", json=three_steps())).json()["workflow_id"]
    wf = await until(api, workflow_id)
    assert wf["status"] == "failed"
    assert [s["status"] for s in wf["steps"]] == ["failed", "skipped", "skipped"]
    assert wf["steps"][0]["error"]["message"] == "not an IFC file"
    assert stub.calls_to("/ifcclash") == []


async def test_cancelling_a_workflow_aborts_the_running_step_and_never_starts_the_rest(api, worker, stub):
    stub.will("/ifcconvert", Behaviour(delay=30))
    workflow_id = (await api.post("/workflows", json=three_steps())).json()["workflow_id"]
    await eventually(lambda: stub.calls_to("/ifcconvert"), 10, what="the first step to call its service")
    r = await api.delete(f"/workflows/{workflow_id}")
    assert r.status_code == 202
    wf = await until(api, workflow_id, ("cancelled",), timeout=10, steps=["aborted", "cancelled", "cancelled"])
    assert wf["status"] == "cancelled"
    assert (await api.delete(f"/workflows/{workflow_id}")).status_code == 409


@pytest.mark.parametrize(
    "steps,step,words",
    [
        ([{"id": "a", "operation": "ifcconvert", "arguments": CONVERT, "depends_on": ["b"]},
          {"id": "b", "operation": "ifc2json", "arguments": {"filename": "${a.x}", "output_filename": "j.json"}}],
         "a", "cycle"),
        ([{"id": "a", "operation": "ifcconvert", "arguments": CONVERT, "depends_on": ["ghost"]}], "a", "unknown step"),
        ([{"id": "a", "operation": "rm -rf", "arguments": CONVERT}], None, "operation"),
        ([{"id": "a", "operation": "ifcconvert", "arguments": {**CONVERT, "input_filename": "../x.ifc"}}], "a",
         "input_filename"),
        ([{"id": "a", "operation": "ifcconvert", "arguments": CONVERT},
          {"id": "a", "operation": "ifcconvert", "arguments": CONVERT}], None, "duplicate"),
    ],
)
async def test_bad_workflows_get_422_naming_the_step(api, stub, steps, step, words):
    r = await api.post("/workflows", json={"steps": steps})
    assert r.status_code == 422, r.text
    assert words in r.text
    if step:
        assert repr(step) in r.text or f"'{step}'" in r.text or f'"{step}"' in r.text
    assert stub.calls == []


async def test_the_workflow_socket_streams_the_graph_until_it_ends(api, gateway, worker, stub, data_dir):
    outputs_exist(data_dir, "output/ifcconvert/model.glb", "output/ifcclash/clash.json")
    stub.will("/ifcconvert", Behaviour(delay=0.5, body={"output_files": ["output/ifcconvert/model.glb"]}))
    stub.will("/ifcclash", Behaviour(body={"clash_count": 0, "checked": "output/ifcclash/clash.json"}))
    workflow_id = (await api.post("/workflows", json=three_steps())).json()["workflow_id"]
    url = "ws" + gateway.removeprefix("http") + f"/workflows/{workflow_id}/ws"
    seen = []
    async with websockets.connect(url, additional_headers={"X-API-Key": API_KEY}) as socket:
        async for raw in socket:
            seen.append(json.loads(raw))
    assert seen[-1]["status"] == "complete"
    assert len(seen) >= 3
    assert any(m["steps"][0]["status"] == "in_progress" for m in seen)


async def test_a_workflow_survives_a_worker_killed_mid_step(api, env, tmp_path, sync_redis, stub, data_dir):
    env["IFCFLOW_WORKER_DEAD_AFTER"] = "2"  # the workers' setting; the gateway stays the shared one
    outputs_exist(data_dir, "output/ifcconvert/model.glb", "output/ifcclash/clash.json")
    stub.will("/ifcconvert", Behaviour(delay=60), Behaviour(body={"output_files": ["output/ifcconvert/model.glb"]}))
    stub.will("/ifcclash", Behaviour(body={"clash_count": 1, "checked": "output/ifcclash/clash.json"}))
    a = start_worker(env, tmp_path / "a.log", sync_redis)
    try:
        workflow_id = (await api.post("/workflows", json=three_steps())).json()["workflow_id"]
        # Killed inside the slow call, not merely after the step shows in_progress: killed before its call
        # reached the service, the rerun would take the slow behaviour and the workflow outlast the wait.
        await eventually(lambda: stub.calls_to("/ifcconvert"), 10, what="the first step to call its service")
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        b = start_worker(env, tmp_path / "b.log", sync_redis)
        try:
            wf = await until(api, workflow_id, timeout=40)
            assert wf["status"] == "complete", wf
        finally:
            b.stop()
    finally:
        a.stop()
