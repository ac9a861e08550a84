"""With a memory budget, a service admits jobs by their expected footprint as well as by slots."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from test_ifc_robustness import until_active

from contracts.operations import Operation
from ifcservices.admission import MIB, MemoryAdmission, estimate
from ifcservices.combined import create_combined_app
from ifcservices.limits import GIB, JobLimits

# Room for one conversion (64 MiB + 100 x input) and one JSON export (32 MiB + 10 x input), not two
# conversions; the two slots of each service would let two of anything run.
BUDGET = 100 * MIB


@pytest.fixture(scope="module")
async def budgeted(data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_combined_app(data_dir=data_dir, concurrency=2, limits=JobLimits(memory_budget=BUDGET))
    async with LifespanManager(app, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://budgeted", timeout=120) as http:
            yield http


def test_estimates_grow_with_the_inputs_and_never_pass_the_memory_limit() -> None:
    assert estimate(Operation.ifcconvert, 0, 4 * GIB) == 64 * MIB
    assert estimate(Operation.ifcconvert, 2_482_286, 4 * GIB) == 64 * MIB + 248_228_600  # FZK-Haus: 311 MiB
    assert estimate(Operation.ifc2json, 10 * MIB, 4 * GIB) == 32 * MIB + 100 * MIB
    assert estimate(Operation.ifcclash, 500 * MIB, 4 * GIB) == 4 * GIB  # a job never gets more than its limit


def test_a_lone_job_is_admitted_whatever_the_budget() -> None:
    admission = MemoryAdmission(budget=10 * MIB)
    assert admission.try_reserve(1 * GIB)
    assert not admission.try_reserve(1 * MIB)
    admission.release(1 * GIB)
    assert admission.try_reserve(5 * MIB) and admission.try_reserve(5 * MIB) and not admission.try_reserve(1)
    assert MemoryAdmission(budget=0).try_reserve(10 * GIB)  # no budget: slots alone


async def test_a_job_past_the_budget_is_busy_while_a_slot_is_free_and_runs_once_memory_frees(
    budgeted: httpx.AsyncClient, data_dir: Path
) -> None:
    slow = asyncio.create_task(budgeted.post(
        "/ifcconvert/ifcconvert",
        json={"input_filename": "uploads/walls__slow3__.ifc", "output_filename": "output/ifcconvert/budget_a.glb"},
    ))
    await until_active(budgeted, "ifcconvert", 1)
    health = (await budgeted.get("/ifcconvert/health")).json()
    assert health["capacity"] == 2 and health["memory_budget_bytes"] == BUDGET
    size = (data_dir / "uploads/walls__slow3__.ifc").stat().st_size
    assert health["memory_reserved_bytes"] == estimate(Operation.ifcconvert, size, 4 * GIB)
    second = {"input_filename": "uploads/walls.ifc", "output_filename": "output/ifcconvert/budget_b.glb"}
    refused = await budgeted.post("/ifcconvert/ifcconvert", json=second)
    assert refused.status_code == 503 and refused.headers["Retry-After"].isdigit()
    error = refused.json()["error"]
    assert error["type"] == "busy"
    assert error["message"] == (
        "ifcconvert is busy: 0.1 GiB of its 0.1 GiB memory budget is reserved by running jobs;"
        " this one needs about 0.1 GiB"
    )
    assert (await budgeted.get("/ifcconvert/health")).json()["active"] == 1  # the refusal freed its slot
    assert (await slow).status_code == 200
    again = await budgeted.post("/ifcconvert/ifcconvert", json=second)
    assert again.status_code == 200, again.text
    assert (await budgeted.get("/ifcconvert/health")).json()["memory_reserved_bytes"] == 0
