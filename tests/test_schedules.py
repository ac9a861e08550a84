"""Recurring schedules fired by real workers: once per slot even with two workers."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import CONVERT, start_worker


async def test_a_schedule_fires_once_per_slot_with_two_workers(api, env, tmp_path, sync_redis, stub):
    a = start_worker(env, tmp_path / "a.log", sync_redis, live=1)
    b = start_worker(env, tmp_path / "b.log", sync_redis, live=2)
    try:
        r = await api.post("/schedules", json={"name": "every 5 s", "cron": "* * * * * */5",
                                               "job": {"operation": "ifcconvert", "arguments": CONVERT}})
        assert r.status_code == 201, r.text
        schedule = r.json()
        assert schedule["next_run"]
        await asyncio.sleep(16)
        paused = await api.post(f"/schedules/{schedule['id']}/pause")
        assert paused.json()["paused"] is True and paused.json()["next_run"] is None
        await asyncio.sleep(1)
        calls = stub.calls_to("/ifcconvert")
        job_ids = [c["headers"]["X-Job-ID"] for c in calls]
        assert 2 <= len(job_ids) <= 4
        assert len(set(job_ids)) == len(job_ids), "a slot ran twice"
        assert all(j.startswith(f"sched-{schedule['id']}-") for j in job_ids)
        fired_by = {
            line.get("job_id")
            for w in (a, b) for line in w.log_lines() if line.get("event") == "schedule.fired"
        }
        assert fired_by == set(job_ids)
        await asyncio.sleep(6)
        assert len(stub.calls_to("/ifcconvert")) == len(calls), "a paused schedule fired"
    finally:
        a.stop()
        b.stop()


async def test_schedules_are_listed_paused_resumed_and_deleted(api):
    body = {"name": "nightly IDS", "cron": "0 2 * * *", "timezone": "Europe/Stockholm",
            "job": {"operation": "ifctester", "arguments": {"ifc_filename": "model.ifc", "ids_filename": "rules.ids",
                                                           "output_filename": "nightly.json"}}}
    created = (await api.post("/schedules", json=body)).json()
    assert created["next_run"].endswith("+00:00")
    assert [s["id"] for s in (await api.get("/schedules")).json()] == [created["id"]]
    assert (await api.post(f"/schedules/{created['id']}/pause")).json()["paused"] is True
    assert (await api.post(f"/schedules/{created['id']}/resume")).json()["paused"] is False
    assert (await api.delete(f"/schedules/{created['id']}")).status_code == 204
    assert (await api.get(f"/schedules/{created['id']}")).status_code == 404


@pytest.mark.parametrize(
    "patch,field",
    [
        ({"cron": "every day"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"job": None}, "exactly one"),
        ({"job": {"operation": "ifcconvert", "arguments": {"input_filename": "/etc"}}}, ""),
    ],
)
async def test_bad_schedules_get_422(api, patch, field):
    body = {"name": "x", "cron": "0 2 * * *", "job": {"operation": "ifcconvert", "arguments": CONVERT}, **patch}
    r = await api.post("/schedules", json=body)
    assert r.status_code == 422 and field in r.text
