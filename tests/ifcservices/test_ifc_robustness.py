"""What must not take a service down: broken files, crashing children, saturation, path escapes."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from ifcmodels import CONCURRENCY, NDJSON_HEADERS, ndjson

from ifcservices.staging import staged_output

# One request per operation, reading the file named {ifc}.
BODIES = {
    "/ifcconvert/ifcconvert": {"input_filename": "{ifc}", "output_filename": "output/ifcconvert/bad.glb"},
    "/ifcclash/ifcclash": {
        "clash_sets": [{"name": "s", "a": [{"file": "{ifc}"}]}],
        "output_filename": "output/ifcclash/bad.json",
    },
    "/ifccsv/ifccsv": {"filename": "{ifc}", "output_filename": "output/ifccsv/bad.csv"},
    "/ifccsv/ifccsv/import": {
        "ifc_filename": "{ifc}",
        "csv_filename": "uploads/edit.csv",
        "output_filename": "output/ifccsv/bad.ifc",
    },
    "/ifctester/ifctester": {
        "ifc_filename": "{ifc}",
        "ids_filename": "uploads/fire.ids",
        "output_filename": "output/ifctester/bad.json",
    },
    "/ifcdiff/ifcdiff": {
        "old_file": "uploads/walls.ifc",
        "new_file": "{ifc}",
        "output_file": "output/ifcdiff/bad.json",
    },
    "/ifc2json/ifc2json": {"filename": "{ifc}", "output_filename": "output/ifc2json/bad.json"},
    "/ifc5d/calculate-qtos": {"input_file": "{ifc}", "output_file": "output/ifc5d/bad.ifc"},
}


def body_for(route: str, ifc: str) -> dict:
    def fill(value):
        if isinstance(value, str):
            return value.replace("{ifc}", ifc)
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    return fill(BODIES[route])


async def until_active(client, service: str, count: int, timeout: float = 20.0) -> None:
    """Poll the service's /health until ``count`` operations are running in it."""
    deadline = time.monotonic() + timeout
    while (await client.get(f"/{service}/health")).json()["active"] < count:
        assert time.monotonic() < deadline, f"{service}: {count} operations never ran at once"
        await asyncio.sleep(0.02)


def service_of(route: str) -> str:
    return route.split("/")[1]


@pytest.fixture(scope="module")
def edit_csv(data_dir: Path) -> None:
    (data_dir / "uploads/edit.csv").write_text("GlobalId,Name\n")


@pytest.mark.parametrize("route", list(BODIES))
async def test_garbage_and_truncated_files_are_422_and_the_service_stays_healthy(client, edit_csv, route):
    garbage = await client.post(route, json=body_for(route, "uploads/garbage.ifc"))
    assert garbage.status_code == 422, garbage.text
    error = garbage.json()["error"]
    assert error["type"] == "invalid_input" and error["service"] == service_of(route)
    assert error["message"] == "uploads/garbage.ifc is not a valid IFC file: Unable to parse IFC SPF header"
    truncated = await client.post(route, json=body_for(route, "uploads/truncated.ifc"))
    assert truncated.status_code == 422, truncated.text
    message = truncated.json()["error"]["message"]
    assert message.startswith("uploads/truncated.ifc is not a valid IFC file: truncated")
    assert "(parser: " in message  # ifcopenshell's own complaint about where it broke off
    assert (await client.get(f"/{service_of(route)}/health")).json()["status"] == "ok"
    works = await client.post(route, json=body_for(route, "uploads/walls.ifc"))
    assert works.status_code == 200, works.text


async def test_a_segfault_fails_only_its_own_request(client):
    good = asyncio.create_task(
        client.post(
            "/ifc2json/ifc2json",
            json={"filename": "uploads/walls__slow3__.ifc", "output_filename": "output/ifc2json/survivor.json"},
        )
    )
    await until_active(client, "ifc2json", 1)  # the neighbour is running
    crash = await client.post(
        "/ifc2json/ifc2json",
        json={"filename": "uploads/walls__segv__.ifc", "output_filename": "output/ifc2json/crash.json"},
    )
    assert crash.status_code == 500
    assert crash.json()["error"] == {
        "type": "crashed",
        "message": "ifcopenshell crashed while converting uploads/walls__segv__.ifc: signal 11",
        "service": "ifc2json",
        "status_code": 500,
    }
    assert (await good).status_code == 200  # the neighbour running meanwhile is untouched
    after = await client.post(
        "/ifc2json/ifc2json", json={"filename": "uploads/walls.ifc", "output_filename": "output/ifc2json/after.json"}
    )
    assert after.status_code == 200
    assert (await client.get("/ifc2json/health")).json()["active"] == 0


async def test_a_segfault_mid_stream_ends_the_stream_with_an_error_event(client):
    body = {"input_filename": "uploads/walls__segv__.ifc", "output_filename": "output/ifcconvert/crash.glb"}
    response = await client.post("/ifcconvert/ifcconvert", json=body, headers=NDJSON_HEADERS)
    assert response.status_code == 200
    events = ndjson(response.text)
    assert events[0]["event"] == "progress"
    assert events[-1] == {
        "event": "error",
        "error": {
            "type": "crashed",
            "message": "ifcopenshell crashed while converting uploads/walls__segv__.ifc: signal 11",
            "service": "ifcconvert",
            "status_code": 500,
        },
    }


async def test_running_out_of_memory_under_the_limit_is_reported_as_the_limit(client):
    # A MemoryError in a child under RLIMIT_AS is the limit: the model asks for more than a job may have.
    response = await client.post("/ifc5d/calculate-qtos", json={"input_file": "uploads/walls__oom__.ifc"})
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "limit_exceeded"
    assert response.json()["error"]["message"] == (
        "stopped calculating quantities of uploads/walls__oom__.ifc: exceeded the memory limit of 4 GiB"
    )


async def test_saturated_service_answers_503_at_once_while_health_keeps_answering(client):
    slow = [
        asyncio.create_task(
            client.post(
                "/ifccsv/ifccsv",
                json={"filename": "uploads/walls__slow3__.ifc", "output_filename": f"output/ifccsv/slow{i}.csv"},
            )
        )
        for i in range(CONCURRENCY)
    ]
    await until_active(client, "ifccsv", CONCURRENCY)
    started = time.monotonic()
    health = await client.get("/ifccsv/health")
    assert health.json()["active"] == CONCURRENCY == health.json()["capacity"]
    busy = await client.post(
        "/ifccsv/ifccsv", json={"filename": "uploads/walls.ifc", "output_filename": "output/ifccsv/refused.csv"}
    )
    assert time.monotonic() - started < 1.0
    assert busy.status_code == 503
    assert busy.headers["Retry-After"].isdigit()
    assert busy.json()["error"]["type"] == "busy"
    other = await client.post(
        "/ifc2json/ifc2json",
        json={  # other services have their own slots
            "filename": "uploads/walls.ifc",
            "output_filename": "output/ifc2json/meanwhile.json",
        },
    )
    assert other.status_code == 200
    assert [r.status_code for r in await asyncio.gather(*slow)] == [200] * CONCURRENCY
    assert (await client.get("/ifccsv/health")).json()["active"] == 0


async def test_progress_streams_as_ndjson_lines_before_the_result(client):
    body = {"filename": "uploads/walls__slow3__.ifc", "output_filename": "output/ifc2json/progress.json"}
    response = await client.post("/ifc2json/ifc2json", json=body, headers=NDJSON_HEADERS)
    events = ndjson(response.text)
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "result" and set(kinds[:-1]) == {"progress"} and len(kinds) > 5
    assert {e["phase"] for e in events[:-1]} >= {"started", "test hook: sleeping", "writing entities", "done"}
    assert events[-1]["result"]["entity_count"] == 8


@pytest.mark.parametrize(
    ("body", "error_type"),
    [
        ({"filename": "uploads/outside.ifc", "output_filename": "output/ifc2json/x.json"}, "path_escape"),
        ({"filename": "uploads/walls.ifc", "output_filename": "output/ifc2json/outside/x.json"}, "path_escape"),
        ({"filename": "../walls.ifc", "output_filename": "output/ifc2json/x.json"}, "invalid_input"),
        ({"filename": "/etc/passwd", "output_filename": "output/ifc2json/x.json"}, "invalid_input"),
        ({"filename": "uploads/missing.ifc", "output_filename": "output/ifc2json/x.json"}, "invalid_input"),
    ],
    ids=["input-symlink", "output-symlinked-dir", "dot-dot", "absolute", "missing"],
)
async def test_paths_leaving_the_data_directory_are_refused(client, data_dir, tmp_path, body, error_type):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "walls.ifc").write_bytes((data_dir / "uploads/walls.ifc").read_bytes())
    for link, target in (
        (data_dir / "uploads/outside.ifc", outside / "walls.ifc"),
        (data_dir / "output/ifc2json/outside", outside),
    ):
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(target)
    response = await client.post("/ifc2json/ifc2json", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["type"] == error_type
    assert sorted(p.name for p in outside.iterdir()) == ["walls.ifc"]  # nothing written outside


async def test_bad_bodies_and_unknown_routes_get_error_bodies(client):
    not_json = await client.post("/ifcdiff/ifcdiff", content=b"{nope", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 422
    assert not_json.json()["error"]["message"] == "request body is not valid JSON"
    missing = await client.post("/ifcdiff/ifcdiff", json={"old_file": "uploads/walls.ifc"})
    assert missing.status_code == 422 and "new_file: Field required" in missing.json()["error"]["message"]
    unknown = await client.get("/ifcdiff/nothing-here")
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "http_error"


def test_staged_outputs_appear_whole_or_not_at_all(tmp_path):
    final = tmp_path / "out" / "model.obj"
    with pytest.raises(RuntimeError), staged_output(final) as (temporary, _committed):
        temporary.write_text("half a file")
        raise RuntimeError("the tool failed midway")
    assert not final.exists() and os.listdir(final.parent) == []
    with staged_output(final) as (temporary, committed):
        temporary.write_text("v 0 0 0\n")
        temporary.with_suffix(".mtl").write_text("newmtl x\n")
        assert not final.exists()  # nothing visible until the tool is done
    assert [p.name for p in committed] == ["model.mtl", "model.obj"]
    assert sorted(os.listdir(final.parent)) == ["model.mtl", "model.obj"]


def test_no_staging_folders_are_left_behind(data_dir):
    assert list(data_dir.rglob(".staging-*")) == []
