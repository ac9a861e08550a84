"""The benchmark harness works end to end: every scenario at tiny size (``python -m bench --quick``).

No timing is asserted: on a shared 2-core machine only the full run's numbers mean anything.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_every_scenario_runs_at_quick_size_and_writes_results(tmp_path: Path) -> None:
    pytest.importorskip("rq", reason="the RQ baseline needs rq: pip install -e '.[bench]'")
    pytest.importorskip("requests", reason="the RQ baseline calls the service with requests: '.[bench]'")
    from bench.cli import SCENARIOS  # every scenario, in the order a run takes them
    from bench.peers.drivers import KEYS, select

    if shutil.which("redis-server") is None:
        pytest.fail("redis-server not found on PATH (apt-get install redis-server)")
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=480,  # peers add a minute; the cores are shared
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    [result] = tmp_path.glob("*.json")
    doc = json.loads(result.read_text())
    assert doc["meta"]["quick"] is True
    sections = {s["key"]: s for s in doc["sections"]}
    assert list(sections) == list(SCENARIOS)
    for key, section in sections.items():
        assert section["rows"], key
        assert section["targets"], key
    # Baselines measured in the same run (the peers that are installed; a note for each one that is not),
    # and every live event delivered.
    peers, missing = select(KEYS)
    keys = {p.key for p in peers}
    assert {r["system"] for r in sections["throughput"]["rows"]} == {"rq", "ifcflow"} | keys
    assert all(r["jobs_s"] > 0 for r in sections["throughput"]["rows"])
    for row in sections["throughput"]["rows"]:
        assert (row.get("ifcflow_ahead") is None) == (row["system"] == "ifcflow"), row
    overhead = {r.get("system"): r for r in sections["overhead"]["rows"]}
    assert overhead["ifcflow"]["vs_raw"] > 0
    assert all(overhead[k]["ifcflow_ahead"] > 0 for k in keys)
    assert {r["system"] for r in sections["fleet"]["rows"]} >= keys
    for key in ("throughput", "overhead", "fleet"):
        assert all(note in sections[key]["notes"] for note in missing), key
    assert any("constant" in r["route"] for r in sections["gateway"]["rows"])
    for row in sections["live"]["rows"] + sections["sockets"]["rows"]:
        got, expected = row["delivered"].split("/")
        assert got == expected, row
    assert (tmp_path / result.name.replace(".json", ".md")).read_text().startswith("Run ")
    for name in SCENARIOS:
        assert f"-- {name}" in run.stderr
