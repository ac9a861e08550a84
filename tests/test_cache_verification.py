"""``cache: true`` reuses an earlier result only while its outputs still hold the bytes they had:
the result cache records each output's sha256 and size and checks them before a hit, so an output
overwritten by another model's (or removed) is a miss, never another model's bytes as this job's
result. Through the real pipeline: gateway, worker, the IFC services."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from store import keys
from tests.conftest import API_KEY, submit, until
from tests.ifcservices.ifcmodels import WALLS, build_walls, grid_walls
from tests.real_pipeline import Pipeline, real_pipeline

OUT = "output/ifcconvert"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "uploads").mkdir(parents=True)
    build_walls(WALLS).write(str(root / "uploads" / "walls.ifc"))
    shutil.copyfile(root / "uploads" / "walls.ifc", root / "uploads" / "walls_copy.ifc")
    build_walls(grid_walls(6)).write(str(root / "uploads" / "grid.ifc"))
    return root


@pytest.fixture
def pipeline(redis_url: str, data: Path, tmp_path: Path, sync_redis: redis.Redis) -> Iterator[Pipeline]:
    with real_pipeline(redis_url, data, tmp_path, sync_redis) as running:
        yield running


@pytest.fixture
async def api(pipeline: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=pipeline.url, headers={"X-API-Key": API_KEY}, timeout=60) as c:
        yield c


async def convert(api: httpx.AsyncClient, source: str, output: str, cache: bool = True) -> dict:
    body = {"input_filename": source, "output_filename": output, "cache": cache}
    view = await until(api, await submit(api, "/ifcconvert", body), timeout=120)
    assert view["status"] == "complete", view
    return view["result"]


def cache_entries(sync_redis: redis.Redis) -> list[dict]:
    return [json.loads(sync_redis.get(k)) for k in sync_redis.scan_iter(keys.RESULT_CACHE + "*")]


async def test_an_output_overwritten_by_another_model_is_a_miss_not_the_other_models_bytes(
    api, data, sync_redis
):
    first = await convert(api, "walls.ifc", "walls.glb")
    assert "cached" not in first
    walls_glb = (data / OUT / "walls.glb").read_bytes()
    [entry] = cache_entries(sync_redis)
    assert entry["files"][f"{OUT}/walls.glb"]["size"] == len(walls_glb)
    # Another model's output lands on the cached output's name.
    await convert(api, "grid.ifc", "walls.glb", cache=False)
    grid_glb = (data / OUT / "walls.glb").read_bytes()
    assert grid_glb != walls_glb

    again = await convert(api, "walls_copy.ifc", "again.glb")
    assert "cached" not in again, "the changed output must not be reused"
    assert (data / OUT / "again.glb").read_bytes() not in (b"", grid_glb)
    assert len((data / OUT / "again.glb").read_bytes()) == len(walls_glb)
    # The stale entry was dropped; the fresh run stored its own, which is reused while intact.
    [entry] = cache_entries(sync_redis)
    assert set(entry["files"]) == {f"{OUT}/again.glb"}
    hit = await convert(api, "walls.ifc", "third.glb")
    assert hit["cached"] is True and hit["output_files"] == [f"{OUT}/third.glb"]
    assert (data / OUT / "third.glb").read_bytes() == (data / OUT / "again.glb").read_bytes()


async def test_a_removed_cached_output_is_a_miss_and_the_operation_runs_again(api, data, sync_redis):
    await convert(api, "walls.ifc", "gone.glb")
    (data / OUT / "gone.glb").unlink()
    rerun = await convert(api, "walls.ifc", "back.glb")
    assert "cached" not in rerun
    assert (data / OUT / "back.glb").stat().st_size > 0
    [entry] = cache_entries(sync_redis)
    assert set(entry["files"]) == {f"{OUT}/back.glb"}
