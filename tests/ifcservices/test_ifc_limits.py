"""Hostile models fail their own job on the memory or CPU limit, clearly and quickly; the service goes on.

The services here run with small limits (512 MiB, or 2 s of CPU) so that each test takes
seconds; the defaults (4 GiB, 60 s plus 60 s per MiB of input) behave the same, only later.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from hostile import boolean_dag, mapped_item_bomb
from ifcmodels import NDJSON_HEADERS, REPO, free_port, ndjson

from ifcservices.combined import create_combined_app
from ifcservices.limits import GIB, MIB, JobLimits, describe_bytes
from settings.config import Settings

# Each test hits one limit: the other is far.
SMALL_MEMORY = JobLimits(memory_bytes=512 * MIB, cpu_seconds=300)
SMALL_CPU = JobLimits(memory_bytes=4 * GIB, cpu_seconds=2, cpu_seconds_per_mib=0.0)


@pytest.fixture(scope="module")
def hostile_models(data_dir: Path) -> dict[str, str]:
    uploads = data_dir / "uploads"
    mapped_item_bomb().write(str(uploads / "mapped_bomb.ifc"))
    boolean_dag().write(str(uploads / "boolean_dag.ifc"))
    return {"memory": "uploads/mapped_bomb.ifc", "cpu": "uploads/boolean_dag.ifc"}


@asynccontextmanager
async def services_with(limits: JobLimits, data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """Every service with ``limits``, one slot each."""
    app = create_combined_app(data_dir=data_dir, concurrency=1, limits=limits)
    async with LifespanManager(app, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://limited", timeout=120) as http:
            yield http


@pytest.fixture(scope="module")
async def small_memory(data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with services_with(SMALL_MEMORY, data_dir) as http:
        yield http


@pytest.fixture(scope="module")
async def small_cpu(data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with services_with(SMALL_CPU, data_dir) as http:
        yield http


def convert(ifc: str, name: str) -> dict[str, str]:
    return {"input_filename": ifc, "output_filename": f"output/ifcconvert/{name}.glb"}


async def test_the_hostile_models_are_tiny(data_dir: Path, hostile_models: dict[str, str]) -> None:
    sizes = {kind: (data_dir / path).stat().st_size for kind, path in hostile_models.items()}
    assert sizes["memory"] < 20_000 and sizes["cpu"] < 5_000, sizes


async def test_a_mapped_item_bomb_fails_on_the_memory_limit_and_the_next_job_runs(
    small_memory: httpx.AsyncClient, hostile_models: dict[str, str]
) -> None:
    limited = small_memory
    started = time.monotonic()
    response = await limited.post("/ifcconvert/ifcconvert", json=convert(hostile_models["memory"], "bomb"))
    seconds = time.monotonic() - started
    assert response.status_code == 422, response.text
    assert response.json()["error"] == {
        "type": "limit_exceeded",
        "message": "stopped converting uploads/mapped_bomb.ifc: exceeded the memory limit of 512 MiB",
        "service": "ifcconvert",
        "status_code": 422,
    }
    assert seconds < 30, seconds
    health = (await limited.get("/ifcconvert/health")).json()
    assert health["status"] == "ok" and health["active"] == 0
    after = await limited.post("/ifcconvert/ifcconvert", json=convert("uploads/walls.ifc", "after_bomb"))
    assert after.status_code == 200, after.text
    assert after.json()["element_count"] == 4


async def test_a_boolean_dag_fails_on_the_cpu_budget_and_the_next_job_runs(
    small_cpu: httpx.AsyncClient, hostile_models: dict[str, str]
) -> None:
    limited = small_cpu
    started = time.monotonic()
    response = await limited.post(
        "/ifcconvert/ifcconvert", json=convert(hostile_models["cpu"], "dag"), headers=NDJSON_HEADERS
    )
    seconds = time.monotonic() - started
    events = ndjson(response.text)
    assert events[-1] == {
        "event": "error",
        "error": {
            "type": "limit_exceeded",
            "message": "stopped converting uploads/boolean_dag.ifc: exceeded 2 s of CPU",
            "service": "ifcconvert",
            "status_code": 422,
        },
    }
    assert seconds < 20, seconds
    after = await limited.post("/ifcconvert/ifcconvert", json=convert("uploads/walls.ifc", "after_dag"))
    assert after.status_code == 200, after.text


def clash(ifc: str, name: str) -> dict[str, object]:
    return {"clash_sets": [{"name": "s", "a": [{"file": ifc}]}], "output_filename": f"output/ifcclash/{name}.json"}


async def test_clash_detection_on_a_hostile_model_is_stopped_too(
    small_memory: httpx.AsyncClient, hostile_models: dict[str, str]
) -> None:
    response = await small_memory.post("/ifcclash/ifcclash", json=clash(hostile_models["memory"], "bomb"))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"] == (
        "stopped clash-testing uploads/mapped_bomb.ifc: exceeded the memory limit of 512 MiB"
    )
    after = await small_memory.post("/ifcclash/ifcclash", json=clash("uploads/walls.ifc", "after_bomb"))
    assert after.status_code == 200, after.text


async def test_health_reports_the_limits(small_cpu: httpx.AsyncClient) -> None:
    health = (await small_cpu.get("/ifcclash/health")).json()
    assert health["limits"] == {"memory_bytes": 4 * GIB, "cpu_seconds": 2, "cpu_seconds_per_mib": 0.0}


def test_the_cpu_budget_grows_with_the_inputs() -> None:
    limits = JobLimits()
    assert limits.cpu_budget(13_000) == 60  # a 13 KB hostile model: stopped after a minute
    assert limits.cpu_budget(27 * MIB) == 60 + 27 * 60  # a 27 MB real model gets 28 minutes
    assert JobLimits(cpu_seconds=0).cpu_budget(10 * GIB) == 0  # off


def test_the_default_settings_suit_a_24_gb_host() -> None:
    settings = Settings(api_keys=["k"])
    assert settings.service_memory_limit == 4 * GIB and describe_bytes(settings.service_memory_limit) == "4 GiB"
    assert settings.service_cpu_seconds == 60


def test_a_service_process_takes_its_limits_from_the_settings(data_dir: Path, hostile_models: dict[str, str]) -> None:
    port = free_port()
    env = {**os.environ, "IFCFLOW_ALLOW_ANONYMOUS": "true", "IFCFLOW_SERVICE_CPU_SECONDS": "3",
           "IFCFLOW_SERVICE_CPU_SECONDS_PER_MIB": "0", "IFCFLOW_SERVICE_MEMORY_LIMIT": str(3 * GIB)}
    command = [sys.executable, "-m", "ifcservices", "ifcconvert", "--port", str(port), "--data-dir", str(data_dir)]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "the service exited"
            try:
                health = httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "no /health within 60 s"
                time.sleep(0.1)
        assert health.json()["limits"] == {"memory_bytes": 3 * GIB, "cpu_seconds": 3, "cpu_seconds_per_mib": 0.0}
        response = httpx.post(f"{base}/ifcconvert", json=convert(hostile_models["cpu"], "live_dag"), timeout=60)
        assert response.status_code == 422
        assert response.json()["error"]["message"] == (
            "stopped converting uploads/boolean_dag.ifc: exceeded 3 s of CPU"
        )
    finally:
        process.terminate()
        process.wait(timeout=15)
