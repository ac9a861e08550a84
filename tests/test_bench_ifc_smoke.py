"""The benchmark scenarios on the real IFC services run end to end at quick size (``python -m bench
geometry ifc_overhead --quick``): a repeat clash and a clash after a convert come from the geometry cache
with the same clashes (the scenario fails otherwise), and the pipeline's convert is timed beside the
direct one. No time is asserted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_geometry_and_real_overhead_scenarios_run_at_quick_size(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server not found on PATH (apt-get install redis-server)")
    run = subprocess.run(
        [sys.executable, "-m", "bench", "geometry", "ifc_overhead", "--quick", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    [result] = tmp_path.glob("*.json")
    sections = {s["key"]: s for s in json.loads(result.read_text())["sections"]}
    assert list(sections) == ["geometry", "ifc_overhead"]
    geometry = sections["geometry"]
    assert len(geometry["rows"]) == 7 and all(r["seconds"] > 0 for r in geometry["rows"])
    assert all(r["speedup"] > 0 for r in geometry["rows"] if r["baseline"] != "-")
    assert geometry["raw"]["threads"][0]["threads"] == 2  # a lone job on 2 free slots gets both cores
    overhead = sections["ifc_overhead"]
    direct, pipeline, service, per_job, *beside = overhead["rows"]
    assert direct["vs_direct"] == 1.0 and pipeline["vs_direct"] > 0 and per_job["vs_direct"] > 0
    assert 0 < service["seconds"] <= pipeline["seconds"]  # the service's own time is part of the job's
    # The CPU of each process beside the convert's child, per pipeline job: each measured, none of it wall.
    assert [r["case"].split(" the ")[1].split()[0] for r in beside] == ["gateway", "worker", "redis", "service"]
    assert all(0 <= r["seconds"] < pipeline["seconds"] * 2 for r in beside)
    assert geometry["targets"] and overhead["targets"]
