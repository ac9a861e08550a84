"""The geometry cache: a repeat clash (or a clash after a convert) of the same bytes is served from stored
shapes with the same clashes, a repeat convert with the same bytes of output; other bytes, a corrupt
entry, an entry of another key or a stored placement that differs are misses; the byte bound evicts the
least recently used entry.

A hit is seen in the cache directory or the cache counts of a result, never in time: an entry that was
read is touched (its modification time moves on) and not rewritten (same inode); a miss writes a new file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from ifcclash.ifcclash import ClashSettings
from ifcmodels import WALLS, build_walls

from contracts.requests import IfcConvertRequest
from ifcservices.context import TaskContext
from ifcservices.geometry_cache import GeometryCache
from ifcservices.ifcfiles import open_ifc
from ifcservices.tools import convert
from ifcservices.tools.clash_geometry import ReportingClasher

LONG_AGO = 1_000_000.0  # an entry's mtime set back to 1970: a hit moves it to now


def cache_dir(data_dir: Path) -> Path:
    return data_dir / ".cache" / "geometry"


def entries(data_dir: Path) -> set[Path]:
    return set(cache_dir(data_dir).glob("*.npz")) if cache_dir(data_dir).is_dir() else set()


def canonical(result: dict[str, Any]) -> set[frozenset[str]]:
    # Within one group "a", ifcclash names either element of a pair first from run to run, with or without
    # the cache (its groups come from sets), and the clash's points and type (pierce or protrusion) follow
    # that order: the pairs that clash are what two runs agree on.
    return {frozenset((c["a_global_id"], c["b_global_id"])) for s in result["clash_sets"] for c in s["clashes"]}


async def clash(client: httpx.AsyncClient, name: str, output: str) -> dict[str, Any]:
    body = {"clash_sets": [{"name": "all", "a": [{"file": f"uploads/{name}"}]}], "output_filename": output}
    response = await client.post("/ifcclash/ifcclash", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def walls_model(data_dir: Path, name: str, walls: dict[str, Any] | None = None) -> None:
    # build_walls draws new GlobalIds each time: bytes no other test has cached.
    build_walls(walls or WALLS).write(str(data_dir / "uploads" / name))


def age(path: Path) -> None:
    os.utime(path, (LONG_AGO, LONG_AGO))


async def test_a_repeat_clash_of_a_real_model_is_served_from_the_cache_with_the_same_clashes(
    client: httpx.AsyncClient, data_dir: Path, samples: Path
) -> None:
    # Bytes of their own (trailing newlines), so that no other test's entry serves them.
    (data_dir / "uploads" / "cache_fzk.ifc").write_bytes((samples / "AC20-FZK-Haus.ifc").read_bytes() + b"\n\n")
    before = entries(data_dir)
    first = await clash(client, "cache_fzk.ifc", "output/ifcclash/cache_fzk_1.json")
    [entry] = entries(data_dir) - before
    inode = entry.stat().st_ino
    age(entry)

    second = await clash(client, "cache_fzk.ifc", "output/ifcclash/cache_fzk_2.json")
    assert entry.stat().st_ino == inode  # read, not written again
    assert entry.stat().st_mtime > LONG_AGO  # touched by the hit
    assert first["clash_count"] == second["clash_count"] > 0
    assert canonical(first) == canonical(second)
    assert first["skipped_elements"] == second["skipped_elements"]


async def test_a_clash_after_a_convert_with_the_same_settings_uses_the_converts_shapes(
    client: httpx.AsyncClient, data_dir: Path, samples: Path
) -> None:
    (data_dir / "uploads" / "cache_fzk_convert.ifc").write_bytes((samples / "AC20-FZK-Haus.ifc").read_bytes() + b"\n")
    before = entries(data_dir)
    # Welded vertices: ifcclash's geometry settings (a plain convert's unwelded meshes are other geometry).
    body = {"input_filename": "uploads/cache_fzk_convert.ifc", "output_filename": "output/ifcconvert/cache_fzk.glb",
            "weld_vertices": True}
    converted = await client.post("/ifcconvert/ifcconvert", json=body)
    assert converted.status_code == 200, converted.text
    assert converted.json()["geometry_cache"]["stored"] == 1
    [entry] = entries(data_dir) - before
    inode = entry.stat().st_ino
    age(entry)

    result = await clash(client, "cache_fzk_convert.ifc", "output/ifcclash/cache_fzk_convert.json")
    assert entry.stat().st_ino == inode and entry.stat().st_mtime > LONG_AGO

    # The same clashes as ifcclash's own tessellation of the model, with no cache at all.
    model = str(data_dir / "uploads" / "cache_fzk_convert.ifc")
    uncached = ReportingClasher(quiet_settings(), 1, GeometryCache(Path(), 0))
    uncached.ifcs[model] = open_ifc(Path(model), "model")
    clash_set = clash_set_of(model)
    uncached.process_clash_set(clash_set)
    assert canonical(result) == {frozenset((c["a_global_id"], c["b_global_id"])) for c in clash_set["clashes"].values()}


async def test_other_bytes_under_the_same_name_are_a_miss(client: httpx.AsyncClient, data_dir: Path) -> None:
    walls_model(data_dir, "cache_same_name.ifc")
    before = entries(data_dir)
    crossing = await clash(client, "cache_same_name.ifc", "output/ifcclash/cache_same_1.json")
    assert crossing["clash_count"] == 1
    apart = {name: (x + 10 * i, y, rotated, length, None) for i, (name, (x, y, rotated, length, _)) in
             enumerate(WALLS.items())}
    walls_model(data_dir, "cache_same_name.ifc", apart)  # same name, other walls: none crossing

    again = await clash(client, "cache_same_name.ifc", "output/ifcclash/cache_same_2.json")
    assert again["clash_count"] == 0
    assert len(entries(data_dir) - before) == 2  # one entry per content


async def test_a_corrupt_entry_or_one_of_another_key_is_a_miss(client: httpx.AsyncClient, data_dir: Path) -> None:
    walls_model(data_dir, "cache_corrupt.ifc")
    walls_model(data_dir, "cache_other.ifc", {"A": WALLS["A"]})  # one wall: no clash
    before = entries(data_dir)
    first = await clash(client, "cache_corrupt.ifc", "output/ifcclash/cache_corrupt_1.json")
    [entry] = entries(data_dir) - before
    await clash(client, "cache_other.ifc", "output/ifcclash/cache_other.json")
    [other] = entries(data_dir) - before - {entry}

    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # truncated
    truncated = await clash(client, "cache_corrupt.ifc", "output/ifcclash/cache_corrupt_2.json")
    assert canonical(truncated) == canonical(first) and truncated["clash_count"] == 1
    with np.load(entry, allow_pickle=False) as data:  # written again, whole
        assert data["verts"].size > 0

    shutil.copyfile(other, entry)  # another model's entry under this one's name
    renamed = await clash(client, "cache_corrupt.ifc", "output/ifcclash/cache_corrupt_3.json")
    assert canonical(renamed) == canonical(first) and renamed["clash_count"] == 1


async def test_clashes_of_one_new_model_at_once_leave_one_whole_entry(
    client: httpx.AsyncClient, data_dir: Path
) -> None:
    walls_model(data_dir, "cache_together.ifc")
    before = entries(data_dir)
    results = await asyncio.gather(
        *(clash(client, "cache_together.ifc", f"output/ifcclash/cache_together_{i}.json") for i in range(2))
    )
    assert [r["clash_count"] for r in results] == [1, 1]
    [entry] = entries(data_dir) - before  # both wrote it, one after the other, each whole
    with np.load(entry, allow_pickle=False) as data:
        assert data["verts"].size > 0
    assert not [p for p in cache_dir(data_dir).iterdir() if p.name.startswith(".tmp-")]


def quiet_settings() -> ClashSettings:
    settings = ClashSettings()
    settings.logger = logging.getLogger("ifcclash")
    return settings


def clash_set_of(path: str) -> dict[str, Any]:
    return {"name": "all", "a": [{"file": path, "mode": "a", "selector": ""}], "b": [], "mode": "intersection",
            "tolerance": 0.01, "check_all": False, "allow_touching": False, "clearance": 0.0}  # the request defaults


def clash_in_process(path: Path, cache: GeometryCache) -> ReportingClasher:
    clasher = ReportingClasher(quiet_settings(), 1, cache)
    clasher.ifcs[str(path)] = open_ifc(path, path.name)
    clasher.clash_sets = [clash_set_of(str(path))]
    clasher.process_clash_set(clasher.clash_sets[0])
    return clasher


def pairs(clasher: ReportingClasher) -> set[frozenset[str]]:
    return {frozenset((c["a_global_id"], c["b_global_id"])) for c in clasher.clash_sets[0]["clashes"].values()}


def test_the_byte_bound_evicts_the_least_recently_used_entry(tmp_path: Path) -> None:
    models = {}
    for name in ("one", "two", "three"):
        models[name] = tmp_path / f"{name}.ifc"
        build_walls(WALLS).write(str(models[name]))
    probe = GeometryCache(tmp_path / "probe", 1 << 30)
    clash_in_process(models["one"], probe)
    [sample] = probe.directory.iterdir()
    size = sample.stat().st_size
    cache = GeometryCache(tmp_path / "cache", int(size * 2.5))  # room for two entries of these models

    clash_in_process(models["one"], cache)
    [one] = cache.directory.iterdir()
    age(one)
    clash_in_process(models["two"], cache)
    [two] = set(cache.directory.iterdir()) - {one}
    os.utime(two, (LONG_AGO - 10, LONG_AGO - 10))  # "two" is now the least recently used
    assert clash_in_process(models["one"], cache).cache_stats()["hits"] == 1  # touches "one"

    clash_in_process(models["three"], cache)
    names = {p.name for p in cache.directory.iterdir()}
    assert one.name in names and two.name not in names and len(names) == 2
    assert cache.stats.as_result() == {"hits": 1, "misses": 3, "stored": 3}


def test_a_repeat_convert_of_a_real_model_is_served_from_the_cache_with_the_same_bytes(
    tmp_path: Path, samples: Path
) -> None:
    (tmp_path / "uploads").mkdir()
    shutil.copyfile(samples / "AC20-FZK-Haus.ifc", tmp_path / "uploads" / "fzk.ifc")
    results, written = {}, {}
    for case, size in (("off", 0), ("first", 1 << 30), ("repeat", 1 << 30)):
        # One thread: the iterator's order, and so the file's, is then the same every time.
        ctx = TaskContext(data_dir=tmp_path, threads=1, _geometry_cache=GeometryCache(tmp_path / "cache", size))
        request = IfcConvertRequest(input_filename="uploads/fzk.ifc", output_filename=f"output/{case}/fzk.glb")
        results[case] = convert.run(request, ctx)
        written[case] = (tmp_path / "output" / case / "fzk.glb").read_bytes()
    assert [results[c]["geometry_cache"] for c in ("off", "first", "repeat")] == [
        {"hits": 0, "misses": 0, "stored": 0},
        {"hits": 0, "misses": 1, "stored": 1},
        {"hits": 1, "misses": 0, "stored": 0},
    ]
    assert written["off"] == written["first"] == written["repeat"]  # styles, placements, order: all the same
    for key in ("element_count", "elements_without_geometry", "size_bytes"):
        assert results["off"][key] == results["first"][key] == results["repeat"][key], key


def test_an_element_whose_stored_placement_differs_is_tessellated_again(tmp_path: Path) -> None:
    path = tmp_path / "walls.ifc"
    build_walls(WALLS).write(str(path))
    cache = GeometryCache(tmp_path / "cache", 1 << 30)
    first = clash_in_process(path, cache)
    [entry] = cache.directory.iterdir()
    key = entry.name.removesuffix(".npz")
    shapes = cache.load(key)
    assert shapes is not None
    moved = next(e for e in shapes.elements.values() if e.name == "A")
    moved.matrix[12] += 100.0  # wall A stored 100 m away from where its placement puts it
    cache.store(key, shapes)

    again = clash_in_process(path, cache)
    assert cache.stats.as_result()["misses"] == 2  # A was tessellated again, not taken as stored
    assert pairs(again) == pairs(first) and len(pairs(first)) == 1  # A still crosses B
    repaired = cache.load(key)
    assert repaired is not None and repaired.elements[moved.id].matrix[12] == moved.matrix[12] - 100.0
