"""11. The pipeline's overhead on real work (issue 19, item 5): one ``ifcconvert`` of a real model through
the gateway, one worker and the real IFC service (submit to the job's record saying complete), against
the same convert done directly with ifcopenshell in one process (``bench/direct_convert.py``, the same
settings, exclusions, serializer and threads). Scenario 2 measures the same path on no-op jobs.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import aiohttp

from bench.cpu import own_seconds
from bench.harness import API_KEY, Harness
from bench.ifc_service import TIMEOUT, fresh_copy, model, service_seconds, start_services
from bench.procs import REPO, BenchError
from bench.report import Column, Section
from bench.stats import median, ratio
from contracts.operations import SERVICES

TARGET = 1.05  # pipeline wall time at most this many times the direct convert's
# A lone job's geometry threads: the service's 2 slots on 2 cores, both free (scenario 10 shows it).
THREADS = 2
# Rounds at full size: the machine's load moves a single convert by 2x, so more than the usual 3.
MIN_ROUNDS = 7


async def _pipeline(session: aiohttp.ClientSession, gateway: str, path: str, n: int) -> tuple[float, str]:
    """Submit, then wait on the job's live status socket, as a client that follows a job does: polling
    the record instead took the gateway a tenth of a core, from the two the convert shares."""
    headers = {"X-API-Key": API_KEY}
    body = {"input_filename": path, "output_filename": f"bench-overhead-{n}.glb"}
    started = time.perf_counter()
    async with session.post(f"{gateway}/ifcconvert", json=body, headers=headers) as response:
        if response.status != 202:
            raise BenchError(f"submit answered {response.status}: {(await response.text())[:300]}")
        job_id = (await response.json())["job_id"]
    async with session.ws_connect(f"{gateway}/jobs/{job_id}/ws", headers=headers) as socket:
        async for message in socket:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            event = json.loads(message.data)
            if event.get("status") == "complete":
                return time.perf_counter() - started, str(job_id)
            if event.get("status") in ("failed", "aborted"):
                raise BenchError(f"the convert job {event['status']}: {event.get('error')}")
    raise BenchError(f"the live status of job {job_id} ended before the job did")


async def _direct(h: Harness, path: str, n: int) -> float:
    output = h.data_dir / "output" / f"bench-direct-{n}.glb"
    output.parent.mkdir(parents=True, exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.direct_convert", str(h.data_dir / path), str(output), str(THREADS),
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise BenchError(f"direct convert failed: {err.decode(errors='replace')[-1000:]}")
    return float(json.loads(out.decode().strip().splitlines()[-1])["seconds"])


async def run(h: Harness) -> Section:
    source, which = model(h.quick)
    section = Section(
        "ifc_overhead",
        "11. Overhead on real work: one convert through gateway, worker and IFC service vs ifcopenshell directly",
        [
            Column("case", "case"),
            Column("seconds", "wall s", "{:.2f}"),
            Column("vs_direct", "x direct", "{:.3f}x"),
        ],
    )
    pipeline: list[float] = []
    direct: list[float] = []
    inside: list[float | None] = []  # the IFC service's own seconds for each pipeline job
    # CPU seconds each process beside the convert's child spent during each pipeline round
    beside: dict[str, list[float]] = {"gateway": [], "worker": [], "redis": [], "service": []}
    rounds = h.rounds if h.quick else max(h.rounds, MIN_ROUNDS)
    async with h.scope() as scope:
        services, proc = await start_services(scope, h.data_dir)
        env = h.ifcflow_env(poll_delay="0.02")  # the default poll delay
        env.update({f"IFCFLOW_{s.upper()}_URL": f"{services}/{s}" for s in SERVICES})
        gateway = await scope.gateway(env)
        workers = await scope.ifcflow_workers(env)
        # The service's main process only: its children are the convert itself.
        pids = {"gateway": gateway.proc.pid, "worker": workers[0].pid, "redis": h.redis_pid, "service": proc.pid}
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            warm = fresh_copy(source, h.data_dir, "overhead-warm.ifc", 0)
            await _pipeline(session, gateway.url, warm, -1)  # warm: the service's first child, the worker's pool
            for n in range(rounds):  # alternate, so drift on the machine hits both alike
                # Bytes of its own each round: the service's convert tessellates (a miss), as the direct one.
                path = fresh_copy(source, h.data_dir, f"overhead-{n}.ifc", n + 1)
                before = {name: own_seconds(pid) for name, pid in pids.items()}
                seconds, job_id = await _pipeline(session, gateway.url, path, n)
                for name, pid in pids.items():
                    beside[name].append(own_seconds(pid) - before[name])
                pipeline.append(seconds)
                inside.append(service_seconds(proc, job_id))
                direct.append(await _direct(h, path, n))
    rel = median([ratio(p, d) for p, d in zip(pipeline, direct, strict=True)])
    own = median([ratio(p, i) for p, i in zip(pipeline, inside, strict=True)])
    section.rows = [
        {"case": f"ifcopenshell directly, one process, {THREADS} threads", "seconds": median(direct), "vs_direct": 1.0},
        {"case": "POST /ifcconvert -> worker -> ifcconvert service -> complete", "seconds": median(pipeline),
         "vs_direct": rel},
        {"case": "  of which the ifcconvert service's own time (same jobs)", "seconds": median(inside),
         "vs_direct": None},
        {"case": "  pipeline / the service's own time, per job", "seconds": None, "vs_direct": own},
        *({"case": f"  CPU s of the {name} process during a pipeline job (not wall)", "seconds": median(v),
           "vs_direct": None} for name, v in beside.items()),
    ]
    section.targets = [f"pipeline <= {TARGET}x the direct convert: {h.judge(None if rel is None else rel <= TARGET)}"]
    section.notes = [
        which,
        "each ratio is the median over rounds of that round's ratio; rounds alternate pipeline and direct",
        "the service's own time is its log's 'operation finished' seconds for the job (child process, tool,"
        " result): pipeline / that is what gateway, Redis, worker and HTTP add, on the same job at the same"
        " moment, so the machine's load does not move it as it moves pipeline / direct",
        "pipeline: from before the submit to the job's live status socket saying complete; each round"
        " on new bytes (a cache miss: tessellated, the entry written, the per-element report); direct: open to"
        " finished .glb,"
        " after the imports (the service's children fork from a process that has them)",
    ]
    section.raw = {"pipeline": pipeline, "direct": direct, "service": inside, "cpu_beside": beside}
    return section
