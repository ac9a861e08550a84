"""The gateway in-process against real Redis: validation, paths, auth, idempotency, scheduling, control."""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack
import pytest

from store.serialization import deserialize

QUEUE = b"arq:queue"


def convert_body(**overrides):
    return {"input_filename": "model.ifc", "output_filename": "model.glb", **overrides}


async def test_submit_answers_202_with_job_id_and_enqueues_msgpack_job(client, sync_redis):
    r = await client.post("/ifcconvert", json=convert_body())
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued"
    assert body["status_url"].endswith(f"/jobs/{body['job_id']}")
    assert body["ws_url"].startswith("ws://") and body["ws_url"].endswith(f"/jobs/{body['job_id']}/ws")
    assert sync_redis.zscore(QUEUE, body["job_id"]) is not None
    raw = sync_redis.get(f"arq:job:{body['job_id']}")
    job = deserialize(raw)  # msgpack, not pickle
    assert job["f"] == "ifcconvert"
    # Paths reach the worker normalized: inputs found in uploads/, outputs under output/<service>/.
    assert job["k"]["request"]["input_filename"] == "uploads/model.ifc"
    assert job["k"]["request"]["output_filename"] == "output/ifcconvert/model.glb"
    assert job["k"]["request_id"] == r.headers["x-request-id"]
    assert isinstance(msgpack.unpackb(raw), dict)


async def test_status_of_queued_job_has_every_field(client):
    job_id = (await client.post("/ifcconvert", json=convert_body())).json()["job_id"]
    view = (await client.get(f"/jobs/{job_id}")).json()
    assert view["job_id"] == job_id
    assert view["operation"] == "ifcconvert"
    assert view["status"] == "queued"
    for key in ("enqueued_at", "started_at", "finished_at", "tries", "progress", "result", "error"):
        assert key in view
    # /status is the RQ system's view of the same record (tests/test_compat_seed.py has the rest).
    seed = (await client.get(f"/jobs/{job_id}/status")).json()
    assert seed["job_id"] == job_id and seed["status"] == "queued"
    for key in ("created_at", "started_at", "ended_at", "execution_time_seconds", "progress", "result", "error"):
        assert key in seed


@pytest.mark.parametrize(
    "field,value",
    [
        ("input_filename", "../etc/passwd"),
        ("input_filename", "/etc/passwd"),
        ("input_filename", "uploads/../../secret.ifc"),
        ("input_filename", "uploads/model.ifc\x00.txt"),
        ("input_filename", "missing.ifc"),
        ("output_filename", "../../escape.glb"),
        ("output_filename", "/tmp/abs.glb"),
    ],
)
async def test_bad_paths_are_refused_with_422_naming_the_field_and_nothing_is_enqueued(
    client, sync_redis, field, value
):
    r = await client.post("/ifcconvert", json=convert_body(**{field: value}))
    assert r.status_code == 422, r.text
    assert field in r.text
    assert "Traceback" not in r.text
    assert sync_redis.zcard(QUEUE) == 0


async def test_symlink_pointing_out_of_data_dir_is_refused(client, data_dir, tmp_path, sync_redis):
    outside = tmp_path / "outside.ifc"
    outside.write_text("secret")
    (data_dir / "uploads" / "link.ifc").symlink_to(outside)
    r = await client.post("/ifcconvert", json=convert_body(input_filename="link.ifc"))
    assert r.status_code == 422
    assert "input_filename" in r.text
    assert sync_redis.zcard(QUEUE) == 0


async def test_an_output_path_through_an_existing_file_is_refused(client, data_dir, sync_redis):
    (data_dir / "output" / "ifcconvert" / "taken.glb").write_bytes(b"glTF")
    r = await client.post("/ifcconvert", json=convert_body(output_filename="taken.glb/model.glb"))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "output_filename"]
    assert sync_redis.zcard(QUEUE) == 0


async def test_a_folder_made_just_after_a_refused_submit_is_seen_at_once(client, data_dir, sync_redis):
    # Every submit looks at the file system afresh: nothing about a refused path is remembered.
    body = convert_body(input_filename="uploads/site-a/model.ifc")
    assert (await client.post("/ifcconvert", json=body)).status_code == 422
    (data_dir / "uploads" / "site-a").mkdir()
    (data_dir / "uploads" / "site-a" / "model.ifc").write_text("ISO-10303-21;\nEND-ISO-10303-21;\n")
    assert (await client.post("/ifcconvert", json=body)).status_code == 202
    assert sync_redis.zcard(QUEUE) == 1


async def test_nested_clash_paths_are_checked(client, sync_redis):
    body = {
        "clash_sets": [{"name": "s", "a": [{"file": "model.ifc"}], "b": [{"file": "../x.ifc"}]}],
        "output_filename": "clash.json",
    }
    r = await client.post("/ifcclash", json=body)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "clash_sets", 0, "b", 0, "file"]
    assert sync_redis.zcard(QUEUE) == 0


async def test_invalid_fields_get_422_naming_the_field(client, sync_redis):
    r = await client.post("/ifcconvert", json=convert_body(output_filename="model.exe"))
    assert r.status_code == 422 and "output_filename" in r.text
    r = await client.post("/ifctester", json={"ifc_filename": "model.ifc", "ids_filename": "rules.ids",
                                              "output_filename": "r.json", "report_type": "pdf"})
    assert r.status_code == 422 and "report_type" in r.text
    r = await client.post("/ifc2json", json={"filename": "model.ifc"})
    assert r.status_code == 422 and "output_filename" in r.text
    assert sync_redis.zcard(QUEUE) == 0


async def test_every_operation_route_accepts_its_rq_era_body(client, sync_redis):
    bodies = {
        "/ifcconvert": convert_body(),
        "/ifcclash": {"clash_sets": [{"name": "s", "a": [{"file": "model.ifc"}], "b": [{"file": "model.ifc"}]}],
                      "output_filename": "c.json"},
        "/ifccsv": {"filename": "model.ifc", "output_filename": "x.csv", "null": "N/A"},
        "/ifccsv/import": {"ifc_filename": "model.ifc", "csv_filename": "model.ifc"},
        "/ifctester": {"ifc_filename": "model.ifc", "ids_filename": "rules.ids", "output_filename": "r.json"},
        "/ifcdiff": {"old_file": "model.ifc", "new_file": "model.ifc"},
        "/ifc2json": {"filename": "model.ifc", "output_filename": "m.json"},
        "/calculate-qtos": {"input_file": "model.ifc"},
    }
    for path, body in bodies.items():
        r = await client.post(path, json=body)
        assert r.status_code == 202, (path, r.text)
    assert sync_redis.zcard(QUEUE) == len(bodies)


async def test_api_key_required_except_for_health(client):
    r = await client.post("/ifcconvert", json=convert_body(), headers={"X-API-Key": ""})
    assert r.status_code == 401
    r = await client.get("/jobs/abc", headers={"X-API-Key": "wrong"})
    assert r.status_code == 403
    r = await client.get("/files", headers={"X-API-Key": "second-key"})
    assert r.status_code == 200
    r = await client.get("/health", headers={"X-API-Key": ""})
    assert r.status_code == 200


async def test_health_is_degraded_without_workers_or_service_checks(client):
    body = (await client.get("/health")).json()
    assert body["status"] == "degraded"
    assert body["redis"]["ok"] is True
    assert body["workers"]["alive"] == 0


async def test_same_idempotency_key_returns_the_same_job_and_enqueues_once(client, sync_redis):
    h = {"Idempotency-Key": "order-42"}
    first = await client.post("/ifcconvert", json=convert_body(), headers=h)
    second = await client.post("/ifcconvert", json=convert_body(), headers=h)
    assert first.status_code == 202 and second.status_code == 200
    assert first.json()["job_id"] == second.json()["job_id"]
    assert second.headers["idempotent-replayed"] == "true"
    assert sync_redis.zcard(QUEUE) == 1
    conflict = await client.post("/ifcconvert", json=convert_body(weld_vertices=True), headers=h)
    assert conflict.status_code == 409
    other_caller = await client.post("/ifcconvert", json=convert_body(), headers={**h, "X-API-Key": "second-key"})
    assert other_caller.json()["job_id"] != first.json()["job_id"]


async def test_defer_by_makes_a_deferred_job_and_it_can_be_cancelled(client, sync_redis):
    r = await client.post("/ifcconvert", json=convert_body(defer_by=600))
    job_id = r.json()["job_id"]
    assert r.json()["status"] == "deferred"
    assert (await client.get(f"/jobs/{job_id}")).json()["status"] == "deferred"
    r = await client.delete(f"/jobs/{job_id}")
    assert r.status_code == 202
    assert r.json()["status"] == "aborted"
    assert sync_redis.zcard(QUEUE) == 0
    assert (await client.delete(f"/jobs/{job_id}")).status_code == 409


async def test_defer_until_needs_a_timezone_and_excludes_defer_by(client):
    soon = (datetime.now(UTC) + timedelta(days=30)).replace(tzinfo=None).isoformat()
    r = await client.post("/ifcconvert", json=convert_body(defer_until=soon))
    assert r.status_code == 422 and "defer_until" in r.text
    r = await client.post("/ifcconvert", json=convert_body(defer_until=soon + "Z", defer_by=5))
    assert r.status_code == 422
    r = await client.post("/ifcconvert", json=convert_body(defer_until=soon + "Z"))
    assert r.json()["status"] == "deferred"


async def test_requeue_of_a_cancelled_job_queues_it_again_under_the_same_id(client, sync_redis):
    job_id = (await client.post("/ifcconvert", json=convert_body())).json()["job_id"]
    await client.delete(f"/jobs/{job_id}")
    r = await client.post(f"/jobs/{job_id}/requeue")
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued"
    assert sync_redis.zscore(QUEUE, job_id) is not None
    assert (await client.post(f"/jobs/{job_id}/requeue")).status_code == 409


async def test_unknown_job_is_404_and_malformed_id_is_422(client):
    assert (await client.get("/jobs/doesnotexist")).status_code == 404
    assert (await client.get("/jobs/bad%20id!")).status_code == 422
    assert (await client.delete("/jobs/doesnotexist")).status_code == 404


async def test_upload_list_and_download_round_trip(client, data_dir):
    content = b"ISO-10303-21;\n" + b"x" * 100_000
    r = await client.post("/upload/ifc", files={"file": ("house.ifc", content)})
    assert r.status_code == 201, r.text
    sha = hashlib.sha256(content).hexdigest()
    assert r.json() == {
        "filename": "house.ifc", "path": "uploads/house.ifc", "size": len(content),
        # the RQ system's keys too (tests/test_compat_seed.py), its version_id the version (the sha256)
        "message": "IFC file house.ifc uploaded successfully", "file_path": "/uploads/house.ifc",
        "original_filename": "house.ifc", "version_id": sha, "sha256": sha,
    }
    assert (data_dir / "uploads" / "house.ifc").read_bytes() == content
    listed = (await client.get("/files")).json()
    assert "uploads/house.ifc" in [f["path"] for f in listed]
    r = await client.get("/files/uploads/house.ifc")
    assert r.status_code == 200 and r.content == content
    assert (await client.post("/ifcconvert", json=convert_body(input_filename="house.ifc"))).status_code == 202


async def test_upload_refuses_bad_names_types_and_oversize(client, data_dir, monkeypatch):
    r = await client.post("/upload/ifc", files={"file": ("../evil.ifc", b"x")})
    assert r.status_code == 201 and r.json()["path"] == "uploads/evil.ifc"  # base name only, never a path
    r = await client.post("/upload/ifc", files={"file": ("notes.txt", b"x")})
    assert r.status_code == 422 and "file" in r.text
    r = await client.post("/upload/pdf", files={"file": ("a.pdf", b"x")})
    assert r.status_code == 422
    r = await client.post("/upload/ifc", data={"other": "x"})
    assert r.status_code in (415, 422)
    from settings import get_settings

    monkeypatch.setattr(get_settings(), "max_upload_bytes", 1000)
    r = await client.post("/upload/ifc", files={"file": ("big.ifc", b"x" * 5000)})
    assert r.status_code == 413
    assert not (data_dir / "uploads" / "big.ifc").exists()
    assert not [p for p in (data_dir / "uploads").iterdir() if p.name.startswith(".upload-")]


async def test_download_stays_inside_the_data_dir(client):
    for path in ("/files/../../etc/passwd", "/files/%2e%2e/%2e%2e/etc/passwd", "/files/uploads/nothere.ifc"):
        assert (await client.get(path)).status_code == 404


async def test_oversized_json_body_is_413(client, sync_redis):
    r = await client.post("/ifcconvert", content=b'{"x": "' + b"a" * 2_000_000 + b'"}',
                          headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert sync_redis.zcard(QUEUE) == 0


async def test_request_id_is_echoed_or_generated(client):
    r = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await client.get("/health")
    assert len(r.headers["x-request-id"]) == 32


async def test_malformed_submits_get_422_naming_the_part_and_nothing_is_enqueued(client, sync_redis):
    """Broken JSON, wrong shapes and a too-long Idempotency-Key get FastAPI's 422 naming the part."""
    headers = {"Content-Type": "application/json"}
    for raw in (b"{not json", b"\xff\xfe\x00garbage", b"", b"[]", b'{"input_filename": 5}'):
        r = await client.post("/ifcconvert", content=raw, headers=headers)
        assert r.status_code == 422, (raw, r.text)
        detail = r.json()["detail"]
        assert detail and all(e["loc"][0] == "body" for e in detail), (raw, detail)
        assert "Traceback" not in r.text
    r = await client.post("/ifcconvert", json=convert_body(), headers={"Idempotency-Key": "k" * 256})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["header", "idempotency-key"]
    assert sync_redis.zcard(QUEUE) == 0 and not sync_redis.keys("arq:job:*")


async def test_submit_takes_the_key_as_a_bearer_token_too(client):
    bearer = {"X-API-Key": "", "Authorization": "Bearer test-key-123"}
    assert (await client.post("/ifcconvert", json=convert_body(), headers=bearer)).status_code == 202
    wrong = {"X-API-Key": "", "Authorization": "Bearer nope"}
    assert (await client.post("/ifcconvert", json=convert_body(), headers=wrong)).status_code == 403
    assert (await client.post("/ifcconvert", json=convert_body(), headers={"X-API-Key": ""})).status_code == 401


# --------------------------------------------------------------------------------------------------
# Many submits at once, and Redis trouble


def made_jobs(sync_redis) -> tuple[int, int, int]:
    """Queue entries, job records and arq job payloads, counted in one transaction."""
    pipe = sync_redis.pipeline(transaction=True)
    pipe.zcard(QUEUE).keys("ifcflow:job:*").keys("arq:job:*")
    queued, records, payloads = pipe.execute()
    return queued, len(records), len(payloads)


async def test_many_concurrent_submits_each_get_their_own_job(client, sync_redis):
    answers = await asyncio.gather(*(client.post("/ifcconvert", json=convert_body()) for _ in range(200)))
    assert {r.status_code for r in answers} == {202}
    ids = {r.json()["job_id"] for r in answers}
    assert len(ids) == 200
    assert {m.decode() for m in sync_redis.zrange(QUEUE, 0, -1)} == ids
    assert all(sync_redis.hget(f"ifcflow:job:{i}", "operation") == b"ifcconvert" for i in ids)


async def test_concurrent_replays_and_conflicts_of_one_key_make_one_job(client, sync_redis):
    key = {"Idempotency-Key": "batch-7"}
    same = [client.post("/ifcconvert", json=convert_body(), headers=key) for _ in range(20)]
    other = [client.post("/ifcconvert", json=convert_body(output_filename="x.glb"), headers=key) for _ in range(5)]
    answers = await asyncio.gather(*same, *other)
    statuses = sorted(r.status_code for r in answers)
    # One request made the job. Requests with its body are replays (200), the others conflicts (409).
    assert statuses.count(202) == 1
    assert set(statuses) <= {200, 202, 409}
    assert statuses.count(409) in (5, 20)
    assert made_jobs(sync_redis) == (1, 1, 1)
    [made] = [r.json()["job_id"] for r in answers if r.status_code == 202]
    assert {r.json()["job_id"] for r in answers if r.status_code == 200} <= {made}


async def test_submits_go_on_after_redis_forgets_its_scripts(client, sync_redis):
    assert (await client.post("/ifcconvert", json=convert_body())).status_code == 202
    sync_redis.script_flush()  # as after a Redis restart
    answers = await asyncio.gather(*(client.post("/ifcconvert", json=convert_body()) for _ in range(30)))
    assert {r.status_code for r in answers} == {202}
    assert made_jobs(sync_redis) == (31, 31, 31)


async def test_after_redis_drops_the_gateways_connections_at_most_one_submit_fails_and_makes_nothing(
    client, sync_redis
):
    assert (await client.post("/ifcconvert", json=convert_body())).status_code == 202
    sync_redis.client_kill_filter(_type="normal", skipme=True)  # as a Redis restart or client timeout would
    # A submit sent before the gateway has seen the close gets 503 (try again); the broken connection
    # is dropped then, so the next one gets a new connection and succeeds.
    first = await client.post("/ifcconvert", json=convert_body())
    assert first.status_code in (202, 503), first.text
    assert (await client.post("/ifcconvert", json=convert_body())).status_code == 202
    made = 3 if first.status_code == 202 else 2
    assert made_jobs(sync_redis) == (made, made, made)


REDIS_TIMEOUT_S = 0.5


@pytest.fixture
def short_redis_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's Redis reads time out after half a second instead of ten."""
    from service import lifespan

    pool = lifespan.connection_pool

    def impatient(settings: Any, **options: Any) -> Any:
        return pool(settings, **{**options, "socket_timeout": REDIS_TIMEOUT_S})

    monkeypatch.setattr(lifespan, "connection_pool", impatient)


@pytest.fixture
def impatient_client(short_redis_timeout, client):
    return client


async def test_a_submit_while_redis_holds_writes_unanswered_is_503_and_nothing_is_half_made(
    impatient_client, sync_redis
):
    client = impatient_client
    assert (await client.post("/ifcconvert", json=convert_body())).status_code == 202
    sync_redis.client_pause(30_000, all=False)  # writes (scripts too) wait unanswered until the unpause
    try:
        started = time.monotonic()
        r = await client.post("/ifcconvert", json=convert_body())
        waited = time.monotonic() - started
    finally:
        sync_redis.client_unpause()
    assert r.status_code == 503, r.text
    assert "Traceback" not in r.text
    assert waited < 10  # the read timed out: the pause did not just end
    assert (await client.post("/ifcconvert", json=convert_body())).status_code == 202
    # The timed-out one may or may not have been made (as with any timeout), but never in part.
    queued, records, payloads = made_jobs(sync_redis)
    assert queued in (2, 3) and records == payloads == queued
