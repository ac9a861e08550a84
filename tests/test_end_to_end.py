"""Gateway (uvicorn) + worker (arq) as real processes, real Redis, the stand-in service they call."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.conftest import CONVERT, TERMINAL, Behaviour, eventually, submit, until

pytestmark = pytest.mark.asyncio


async def test_submitted_job_completes_with_the_service_result(api, worker, stub):
    stub.will("/ifcconvert", Behaviour(body={"output_files": ["output/ifcconvert/model.glb"], "size": 10}))
    job_id = await submit(api, headers={"X-Request-ID": "req-e2e-1"})
    view = await until(api, job_id, TERMINAL)
    assert view["status"] == "complete", view
    assert view["result"] == {"output_files": ["output/ifcconvert/model.glb"], "size": 10}
    assert view["tries"] == 1
    assert view["started_at"] and view["finished_at"] and view["enqueued_at"]
    call = stub.calls_to("/ifcconvert")[0]
    assert call["body"]["input_filename"] == "uploads/model.ifc"
    assert call["headers"]["X-Request-ID"] == "req-e2e-1"
    assert call["headers"]["X-Job-ID"] == job_id
    # One structured log stream: each step is an event carrying job and request ids.
    def job_events():
        found = {line["event"]: line for line in worker.log_lines() if line.get("job_id") == job_id}
        return found if "job.completed" in found else None

    events = await eventually(job_events, what="the job.completed log line")
    assert {"job.started", "service.call", "job.completed"} <= set(events)
    assert events["job.completed"]["request_id"] == "req-e2e-1"
    assert events["job.completed"]["operation"] == "ifcconvert"
    assert "duration_ms" in events["job.completed"]


async def test_two_503s_are_retried_then_the_job_completes(api, worker, stub):
    # A 503 that is not "busy" (a proxy in front of a restarting service): each one is a try.
    down = Behaviour(status=503, body={"error": {"type": "unavailable", "message": "service restarting"}},
                     headers={"Retry-After": "0"})
    stub.will("/ifcclash", down, down, Behaviour(body={"clash_count": 2}))
    body = {"clash_sets": [{"name": "s", "a": [{"file": "model.ifc"}], "b": []}], "output_filename": "c.json"}
    job_id = await submit(api, "/ifcclash", body)
    view = await until(api, job_id, TERMINAL)
    assert view["status"] == "complete", view
    assert view["result"] == {"clash_count": 2}
    assert view["tries"] == 3
    assert len(stub.calls_to("/ifcclash")) == 3
    retries = [e for e in worker.log_lines() if e.get("event") == "job.retrying" and e.get("job_id") == job_id]
    assert [e["attempt"] for e in retries] == [1, 2]
    assert "service restarting" in retries[0]["reason"]


async def test_a_4xx_fails_at_once_with_the_service_message(api, worker, stub):
    stub.will("/ifc2json", Behaviour(status=422, body={"error": {"type": "invalid_input",
                                                                 "message": "model.ifc is not an IFC file"}}))
    job_id = await submit(api, "/ifc2json", {"filename": "model.ifc", "output_filename": "m.json"})
    view = await until(api, job_id, TERMINAL)
    assert view["status"] == "failed"
    assert view["tries"] == 1
    assert view["error"] == {"type": "service_error", "message": "model.ifc is not an IFC file",
                             "service": "ifc2json", "status_code": 422}
    assert len(stub.calls_to("/ifc2json")) == 1


async def test_a_service_that_stays_down_fails_the_job_after_max_tries(api, worker, stub):
    stub.will("/ifcdiff", *[Behaviour(status=500, body="boom")] * 4)
    job_id = await submit(api, "/ifcdiff", {"old_file": "model.ifc", "new_file": "model.ifc"})
    view = await until(api, job_id, TERMINAL)
    assert view["status"] == "failed"
    assert view["tries"] == 4
    assert view["error"]["type"] == "service_unavailable"
    assert "boom" in view["error"]["message"]


@pytest.fixture
def short_timeout(env):
    env["IFCFLOW_JOB_TIMEOUTS"] = '{"ifccsv": 1}'


async def test_a_job_over_its_time_limit_fails_with_timeout(short_timeout, api, worker, stub):
    stub.will("/ifccsv", Behaviour(delay=5))
    job_id = await submit(api, "/ifccsv", {"filename": "model.ifc", "output_filename": "x.csv"})
    view = await until(api, job_id, TERMINAL)
    assert view["status"] == "failed"
    assert view["error"]["type"] == "timeout"


async def test_cancel_of_a_running_job_aborts_it(api, worker, stub):
    stub.will("/ifcconvert", Behaviour(delay=30))
    job_id = await submit(api)
    await until(api, job_id, {"in_progress"})
    r = await api.delete(f"/jobs/{job_id}")
    assert r.status_code == 202
    view = await until(api, job_id, TERMINAL)
    assert view["status"] == "aborted"
    assert view["error"]["type"] == "aborted"


async def ran_since(api, stub, path="/ifcconvert", body=None):
    """Submit a job and wait for it to complete: the worker has polled the queue since every earlier submit.
    Returns the job ids the stand-in service was called for (the witness included)."""
    witness = await submit(api, path, body)
    assert (await until(api, witness, TERMINAL))["status"] == "complete"
    return [c["headers"]["X-Job-ID"] for c in stub.calls], witness


async def test_cancel_of_a_queued_job_means_it_never_runs(api, worker, stub):
    job_id = await submit(api, body={**CONVERT, "defer_by": 1})
    r = await api.delete(f"/jobs/{job_id}")
    assert r.json()["status"] == "aborted"
    # A job deferred as long, submitted after it, has run: the cancelled one's time has come and gone.
    called, witness = await ran_since(api, stub, body={**CONVERT, "defer_by": 1})
    assert called == [witness]
    assert (await api.get(f"/jobs/{job_id}")).json()["status"] == "aborted"


async def test_requeue_runs_a_failed_job_again_with_its_arguments(api, worker, stub):
    stub.will("/calculate-qtos", Behaviour(status=400, body={"detail": "no quantities"}), Behaviour(body={"n": 3}))
    job_id = await submit(api, "/calculate-qtos", {"input_file": "model.ifc"})
    assert (await until(api, job_id, TERMINAL))["status"] == "failed"
    r = await api.post(f"/jobs/{job_id}/requeue")
    assert r.status_code == 202
    view = await until(api, job_id, TERMINAL)
    assert view["status"] == "complete" and view["result"] == {"n": 3}
    first, second = stub.calls_to("/calculate-qtos")
    assert first["body"] == second["body"]
    assert second["body"]["output_file"] == "output/ifc5d/model_qto.ifc"


async def test_progress_lines_from_the_service_show_in_the_job_status(api, worker, stub):
    stub.will("/ifcconvert", Behaviour(delay=0.4, stream=[
        {"event": "progress", "percent": 10, "phase": "parsing"},
        {"event": "progress", "percent": 60, "phase": "tessellating"},
        {"event": "progress", "percent": 90, "phase": "writing"},
        {"event": "result", "result": {"output_files": ["output/ifcconvert/model.glb"]}},
    ]))
    job_id = await submit(api)
    seen = set()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        view = (await api.get(f"/jobs/{job_id}")).json()
        if view["progress"]:
            seen.add((view["progress"]["percent"], view["progress"]["phase"]))
        if view["status"] in TERMINAL:
            break
        await asyncio.sleep(0.05)
    assert view["status"] == "complete"
    assert (60, "tessellating") in seen


async def test_an_error_event_in_the_stream_fails_the_job_with_its_message(api, worker, stub):
    stub.will("/ifcconvert", Behaviour(stream=[
        {"event": "progress", "percent": 5, "phase": "parsing"},
        {"event": "error", "error": {"type": "crashed",
                                     "message": "ifcopenshell crashed while converting model.ifc: signal 11"}},
    ]))
    job_id = await submit(api)
    view = await until(api, job_id, TERMINAL)
    assert view["status"] == "failed"
    assert view["error"]["message"] == "ifcopenshell crashed while converting model.ifc: signal 11"
    assert view["error"]["service"] == "ifcconvert"


async def test_idempotent_submit_runs_the_job_once(api, worker, stub):
    h = {"Idempotency-Key": "nightly-2026-11-29"}
    first = await submit(api, headers=h)
    view = await until(api, first, TERMINAL)
    again = await api.post("/ifcconvert", json=CONVERT, headers=h)
    assert again.status_code == 200 and again.json()["job_id"] == first
    assert again.json()["status"] == view["status"] == "complete"
    called, witness = await ran_since(api, stub)
    assert called == [first, witness]


async def test_bad_paths_and_keys_are_refused_by_the_real_gateway(api, worker, stub):
    r = await api.post("/ifcconvert", json={**CONVERT, "input_filename": "../../etc/passwd"})
    assert r.status_code == 422 and "input_filename" in r.text
    r = await api.post("/ifcconvert", json=CONVERT, headers={"X-API-Key": "nope"})
    assert r.status_code == 403
    called, witness = await ran_since(api, stub)
    assert called == [witness]


async def test_health_reports_live_workers_and_checked_services(api, worker, stub):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        body = (await api.get("/health", headers={"X-API-Key": ""})).json()
        if body["status"] == "healthy":
            break
        await asyncio.sleep(0.1)
    assert body["status"] == "healthy", body
    assert body["workers"]["alive"] == 1
    assert all(s["healthy"] for s in body["services"].values())


async def test_many_jobs_run_concurrently_on_one_worker(api, worker, stub):
    stub.default = Behaviour(delay=2.0, body={"ok": True})
    ids = await asyncio.gather(*(submit(api) for _ in range(100)))
    views = await asyncio.gather(*(until(api, j, TERMINAL, timeout=60) for j in ids))
    assert all(v["status"] == "complete" for v in views)
    # One worker process had most of the 100 calls open at the same moment, not one at a time.
    assert stub.max_in_flight >= 50


@pytest.fixture
def clash_queue(env):
    env["IFCFLOW_QUEUES"] = '{"ifcclash": "clash"}'


async def test_an_operation_routed_to_its_own_queue_runs_only_on_that_queues_workers(
    clash_queue, api, worker, stub, env, tmp_path, sync_redis
):
    from tests.conftest import start_worker

    body = {"clash_sets": [{"name": "s", "a": [{"file": "model.ifc"}], "b": []}], "output_filename": "c.json"}
    job_id = await submit(api, "/ifcclash", body)
    # A job of the default queue submitted after it has run: the default-queue worker left this one.
    await ran_since(api, stub)
    assert (await api.get(f"/jobs/{job_id}")).json()["status"] == "queued"
    assert sync_redis.zscore("clash", job_id) is not None
    clash_worker = start_worker({**env, "IFCFLOW_QUEUE_NAME": "clash"}, tmp_path / "clash.log", sync_redis, live=2)
    try:
        view = await until(api, job_id, TERMINAL)
        assert view["status"] == "complete"
        assert any(e.get("job_id") == job_id for e in clash_worker.log_lines())
        assert not any(e.get("job_id") == job_id for e in worker.log_lines())
    finally:
        clash_worker.stop()
