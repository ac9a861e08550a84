"""The real IFC services for the scenarios that measure ifcopenshell's work (``geometry``, ``ifc_overhead``):
a ``python -m ifcservices all`` process, a real model, and timed calls to it."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import Scope
from bench.procs import REPO, BenchError, Proc, free_port, python_args, wait_until

# The real model (the sample models beside the repository, as the tests read them); --quick: a tiny one.
SAMPLES = REPO.parent / "shared" / "samples"
REAL_MODEL = SAMPLES / "AC20-FZK-Haus.ifc"
TINY_MODEL = REPO / "tests" / "data" / "ifc" / "bath-csg-solid.ifc"
# One slot per core of the 2-core machine: a lone job gets both cores (issue 19, item 3).
CONCURRENCY = "2"
TIMEOUT = aiohttp.ClientTimeout(total=1800)


def model(quick: bool) -> tuple[Path, str]:
    """The model a scenario converts and clashes, and a note saying which it is."""
    if quick:
        return TINY_MODEL, f"--quick: {TINY_MODEL.name} (3.5 KB), which measures nothing"
    if not REAL_MODEL.is_file():
        raise BenchError(f"the real model {REAL_MODEL} is missing (see tests/ifcservices/ifcmodels.py SAMPLES)")
    size = REAL_MODEL.stat().st_size / 1e6
    return REAL_MODEL, f"model: {REAL_MODEL.name} ({size:.1f} MB, IFC4, ArchiCAD 20 export, KIT's FZK-Haus)"


def fresh_copy(source: Path, data_dir: Path, name: str, variant: int) -> str:
    """``source`` as ``uploads/<name>`` with ``variant`` trailing newlines: the same model in bytes no
    earlier round has cached. Returns the path relative to the data directory."""
    target = data_dir / "uploads" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    with target.open("ab") as handle:
        handle.write(b"\n" * variant)
    return f"uploads/{name}"


async def start_services(scope: Scope, data_dir: Path, **settings: str) -> tuple[str, Proc]:
    """Every IFC service in one process on ``data_dir``; ``settings`` are IFCFLOW_ settings without the
    prefix. Returns the base URL (``<url>/<service>`` is each service) and the process."""
    port = free_port()
    env = {"IFCFLOW_SERVICE_CONCURRENCY": CONCURRENCY, "IFCFLOW_LOG_JSON": "true"}
    env.update({f"IFCFLOW_{k.upper()}": v for k, v in settings.items()})
    args = python_args("-m", "ifcservices", "all", "--host", "127.0.0.1", "--port", str(port),
                       "--data-dir", str(data_dir))
    proc = scope.start("ifcservices", args, env)
    url = f"http://127.0.0.1:{port}"

    async def up() -> bool:
        try:
            async with aiohttp.ClientSession() as session, session.get(f"{url}/health") as response:
                return response.status == 200
        except (aiohttp.ClientError, OSError):
            return False

    await wait_until(up, "ifcservices", within=120, procs=(proc,))
    return url, proc


def service_seconds(proc: Proc, job_id: str) -> float | None:
    """The IFC service's own time for a job's call, from its log line "operation finished"."""
    for line in proc.log_path.read_text(errors="replace").splitlines():
        if job_id in line and "operation finished" in line:
            try:
                return float(json.loads(line)["seconds"])
            except (ValueError, KeyError):
                return None
    return None


async def call(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """POST ``body`` to an operation of the service; its wall time in seconds and its result."""
    started = time.perf_counter()
    async with session.post(url, json=body, timeout=TIMEOUT) as response:
        result: dict[str, Any] = await response.json()
        if response.status != 200:
            raise BenchError(f"{url} answered {response.status}: {str(result)[:500]}")
    return time.perf_counter() - started, result


def clash_body(path: str, output: str) -> dict[str, Any]:
    return {"clash_sets": [{"name": "all", "a": [{"file": path}]}], "output_filename": output}


def clash_pairs(result: dict[str, Any]) -> set[frozenset[str]]:
    """The pairs a clash result found (within one group "a", ifcclash names either element first from run
    to run, and the points and pierce/protrusion type follow that order)."""
    return {frozenset((c["a_global_id"], c["b_global_id"])) for s in result["clash_sets"] for c in s["clashes"]}
