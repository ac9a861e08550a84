"""A lone job uses every core of its service; jobs started while others run share what is free."""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest
from ifcmodels import CONCURRENCY
from test_ifc_robustness import until_active

from ifcservices.service import threads_for

CORES = os.cpu_count() or 1


@pytest.mark.parametrize(
    ("cores", "capacity", "free", "threads"),
    [(2, 2, 2, 2), (2, 2, 1, 1), (8, 4, 4, 8), (8, 4, 3, 6), (8, 4, 1, 2), (1, 4, 1, 1), (2, 4, 1, 1)],
)
def test_a_job_gets_the_cores_of_the_slots_free_when_it_starts(
    cores: int, capacity: int, free: int, threads: int
) -> None:
    assert threads_for(cores, capacity, free) == threads


def convert(ifc: str, name: str) -> dict[str, str]:
    return {"input_filename": ifc, "output_filename": f"output/ifcconvert/{name}.glb"}


async def test_a_lone_conversion_uses_every_core(client: httpx.AsyncClient) -> None:
    response = await client.post("/ifcconvert/ifcconvert", json=convert("uploads/walls.ifc", "lone"))
    assert response.json()["threads"] == CORES


async def test_a_conversion_started_beside_another_gets_the_cores_left(client: httpx.AsyncClient) -> None:
    first = asyncio.create_task(client.post("/ifcconvert/ifcconvert", json=convert("uploads/walls__slow3__.ifc", "a")))
    await until_active(client, "ifcconvert", 1)
    second = await client.post("/ifcconvert/ifcconvert", json=convert("uploads/walls.ifc", "beside"))
    assert second.json()["threads"] == threads_for(CORES, CONCURRENCY, CONCURRENCY - 1)
    assert (await first).json()["threads"] == CORES


async def test_the_threads_option_caps_the_share(client: httpx.AsyncClient) -> None:
    body = {**convert("uploads/walls.ifc", "capped"), "threads": 1}
    assert (await client.post("/ifcconvert/ifcconvert", json=body)).json()["threads"] == 1
