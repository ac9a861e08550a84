"""Recurring schedules fired by real workers: once per slot even with two workers."""

from __future__ import annotations

import time

import pytest

from tests.conftest import CONVERT, eventually, start_worker


async def test_a_schedule_fires_once_per_slot_with_two_workers(api, env, tmp_path, sync_redis, stub):
    a = start_worker(env, tmp_path / "a.log", sync_redis, live=1)
    b = start_worker(env, tmp_path / "b.log", sync_redis, live=2)
    try:
        r = await api.post("/schedules", json={"name": "every 5 s", "cron": "* * * * * */5",
                                               "job": {"operation": "ifcconvert", "arguments": CONVERT}})
        assert r.status_code == 201, r.text
        schedule = r.json()
        assert schedule["next_run"]
        # A second schedule, on another operation, as a witness: the workers check every schedule at once,
        # so each slot it fires in is a check of the first one too.
        witness = (await api.post("/schedules", json={
            "name": "witness", "cron": "* * * * * */5",
            "job": {"operation": "ifc2json", "arguments": {"filename": "model.ifc", "output_filename": "w.json"}},
        })).json()  # fmt: skip
        await eventually(lambda: len(stub.calls_to("/ifcconvert")) >= 2, 20, what="two slots to fire")
        paused = await api.post(f"/schedules/{schedule['id']}/pause")
        assert paused.json()["paused"] is True and paused.json()["next_run"] is None
        paused_at = int(time.time() * 1000)

        def slot(job_id: str) -> int:
            return int(job_id.rsplit("-", 1)[1])

        def witness_slots() -> list[int]:
            return [slot(c["headers"]["X-Job-ID"]) for c in stub.calls_to("/ifc2json")]

        # The witness fired a slot after the pause: the paused schedule was checked in it and left alone.
        await eventually(lambda: max(witness_slots(), default=0) > paused_at, 20, what="a slot after the pause")
        def fired(schedule_id: str) -> set[str]:
            return {line["job_id"] for w in (a, b) for line in w.log_lines()
                    if line.get("event") == "schedule.fired" and line.get("schedule_id") == schedule_id}

        def called(path: str) -> set[str]:
            return {c["headers"]["X-Job-ID"] for c in stub.calls_to(path)}

        # A worker logs a fire once its job is made, so the job may reach the service first; and a job
        # fired just before the pause may still be on its way: wait until both sides agree.
        await eventually(lambda: fired(schedule["id"]) == called("/ifcconvert"), 10, what="fires and runs to agree")
        await eventually(lambda: fired(witness["id"]) >= called("/ifc2json"), 10, what="the witness's fires")
        job_ids = [c["headers"]["X-Job-ID"] for c in stub.calls_to("/ifcconvert")]
        assert 2 <= len(job_ids) <= 4
        assert len(set(job_ids)) == len(job_ids), "a slot ran twice"
        assert all(j.startswith(f"sched-{schedule['id']}-") for j in job_ids)
        assert all(slot(j) <= paused_at for j in job_ids), "a paused schedule fired"
        assert len(set(witness_slots())) == len(witness_slots()), "a witness slot ran twice"
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
