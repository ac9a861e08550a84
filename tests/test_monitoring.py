"""/metrics, the recent-jobs listing and the dashboard's overview, against real processes."""

from __future__ import annotations

import asyncio
import time

from prometheus_client.parser import text_string_to_metric_families

from access import key_store
from access.grants import Role
from contracts.operations import Operation
from settings import get_settings
from store import job_store
from store.job_store import NewJob, TryEnd
from tests.conftest import API_KEY, CONVERT, Behaviour, submit, until


async def scrape(api, **headers):
    r = await api.get("/metrics", headers=headers or None)
    assert r.status_code == 200, r.text
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_change_as_jobs_run_and_parse_as_prometheus_text(api, worker, stub):
    before = await scrape(api)
    busy = Behaviour(status=503, body="busy", headers={"Retry-After": "0"})
    stub.will("/ifcconvert", busy, Behaviour(body={"ok": 1}), Behaviour(status=422, body={"detail": "bad model"}))
    first = await submit(api)
    await until(api, first)
    second = await submit(api)
    await until(api, second)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        after = await scrape(api)
        if value(after, "ifcflow_service_up", service="ifcconvert") == 1:
            break
        await asyncio.sleep(0.2)
    def delta(outcome):
        key = ("ifcflow_jobs_total", (("operation", "ifcconvert"), ("outcome", outcome)))
        return after.get(key, 0) - before.get(key, 0)
    assert delta("enqueued") == 2
    assert delta("completed") == 1
    assert delta("failed") == 1
    assert delta("retried") == 1
    assert value(after, "ifcflow_job_duration_seconds_count", operation="ifcconvert") == 2  # final tries
    assert value(after, "ifcflow_job_queue_wait_seconds_count", operation="ifcconvert") == 2
    assert value(after, "ifcflow_workers_live", queue="arq:queue") == 1
    assert value(after, "ifcflow_service_up", service="ifcconvert") == 1
    assert ("ifcflow_queue_jobs", (("queue", "arq:queue"), ("state", "queued"))) in after
    latency = [k for k in after if k[0] == "ifcflow_http_request_duration_seconds_count"
               and ("route", "/ifcconvert") in k[1]]
    assert latency, "request latency by route"


async def test_queue_gauges_count_waiting_deferred_and_running_jobs(api, worker, stub):
    stub.will("/ifcconvert", Behaviour(delay=5))
    running = await submit(api)
    await submit(api, body={**CONVERT, "defer_by": 600})
    await until(api, running, {"in_progress"})
    # The next heartbeat carries the running count: scrape until it is in.
    deadline = time.monotonic() + 10
    while value(samples := await scrape(api), "ifcflow_jobs_in_flight") != 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert value(samples, "ifcflow_queue_jobs", queue="arq:queue", state="deferred") == 1
    assert value(samples, "ifcflow_queue_jobs", queue="arq:queue", state="in_progress") == 1
    assert value(samples, "ifcflow_queue_jobs", queue="arq:queue", state="queued") == 0
    assert value(samples, "ifcflow_jobs_in_flight") == 1


async def test_metrics_need_a_key_and_take_it_as_a_bearer_token(api):
    assert (await api.get("/metrics", headers={"X-API-Key": ""})).status_code == 401
    r = await api.get("/metrics", headers={"X-API-Key": "", "Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 200


async def test_recent_jobs_list_pages_and_filters_from_the_index(client):
    ids = []
    for i in range(7):
        body = {"filename": "model.ifc", "output_filename": f"m{i}.json"} if i % 2 else None
        r = await client.post("/ifc2json" if i % 2 else "/ifcconvert", json=body or CONVERT)
        ids.append(r.json()["job_id"])
    page = (await client.get("/jobs", params={"limit": 3})).json()
    assert [j["job_id"] for j in page["jobs"]] == ids[::-1][:3]
    assert page["indexed"] == 7
    rest = (await client.get("/jobs", params={"limit": 10, "offset": page["next_offset"]})).json()
    assert [j["job_id"] for j in rest["jobs"]] == ids[::-1][3:]
    assert rest["next_offset"] is None
    only = (await client.get("/jobs", params={"operation": "ifc2json", "status": "queued"})).json()
    assert {j["operation"] for j in only["jobs"]} == {"ifc2json"} and len(only["jobs"]) == 3
    assert only["jobs"][0]["arguments"]["filename"] == "uploads/model.ifc"
    assert (await client.get("/jobs", params={"status": "nope"})).status_code == 422


async def test_dashboard_page_is_served_and_its_overview_needs_the_key(api, worker):
    page = await api.get("/dashboard", headers={"X-API-Key": ""})
    assert page.status_code == 200 and "ifcflow" in page.text
    assert (await api.get("/dashboard/app.js")).status_code == 200
    assert (await api.get("/dashboard/../settings")).status_code == 404
    assert (await api.get("/dashboard-api/overview", headers={"X-API-Key": ""})).status_code == 401
    overview = (await api.get("/dashboard-api/overview")).json()
    assert overview["queues"]["arq:queue"].keys() >= {"queued", "deferred", "in_progress", "history"}
    assert len(overview["workers"]) == 1
    assert overview["workers"][0].keys() >= {"host", "pid", "queue", "started_at", "running", "complete",
                                             "failed", "retried", "last_heartbeat"}


async def test_per_project_series_count_waiting_and_finished_jobs_and_a_project_key_sees_only_its_own(
    client, aredis
):
    settings = get_settings()
    jobs = [NewJob(Operation.ifcconvert, CONVERT, f"{p}{i}", project=p, fresh_id=True)
            for p, n in (("a", 3), ("b", 1)) for i in range(n)]
    assert await job_store.create_many(aredis, settings, jobs) == [True] * 4
    [(done, _)] = (await job_store.claim(aredis, settings, settings.queue_name, "w", 1, 60_000)).jobs
    await job_store.start(aredis, done, "w", 1)
    await job_store.finish(aredis, settings, done, "w", 1, Operation.ifcconvert, TryEnd("complete", result={}))

    admin = await scrape(client)
    assert value(admin, "ifcflow_project_jobs_waiting", project="a", queue="arq:queue") == 2
    assert value(admin, "ifcflow_project_jobs_waiting", project="b", queue="arq:queue") == 1
    assert value(admin, "ifcflow_project_jobs_total", project="a", outcome="enqueued") == 3
    assert value(admin, "ifcflow_project_jobs_total", project="a", outcome="completed") == 1
    assert value(admin, "ifcflow_project_jobs_total", project="b", outcome="enqueued") == 1

    a_key, _ = await key_store.create(aredis, "a", Role.read, "", created_by="test")
    r = await client.get("/metrics", headers={"X-API-Key": a_key})
    assert r.status_code == 200 and 'project="b"' not in r.text
    own = await scrape(client, **{"X-API-Key": a_key})
    per_project = {dict(labels)["project"] for (name, labels) in own if name.startswith("ifcflow_project_")}
    assert per_project == {"a"}
    assert value(own, "ifcflow_project_jobs_waiting", project="a", queue="arq:queue") == 2
    assert value(own, "ifcflow_project_jobs_total", project="a", outcome="completed") == 1
    assert ("ifcflow_workers_live", (("queue", "arq:queue"),)) in own  # the system's series stay

