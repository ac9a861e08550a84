"""9. Burst: many jobs at once against a service with few slots, and a deep backlog behind a full one.

What it shows: the fleet sends a service no more calls than it has slots (``store/service_slots.py``),
so a burst runs at the service's pace with no failed job and (almost) no "busy" answer; and jobs
that wait for a full service cost the worker nothing while they wait.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from bench.harness import Harness, Scope
from bench.jobs import CONVERT, failed_arq, new_ids
from bench.procs import BenchError
from bench.report import Column, Section
from bench.stats import median
from bench.watch import KeyWatcher
from contracts.operations import Operation
from settings import Settings
from store import job_store, keys
from store.job_store import NewJob

POLL_DELAY = "0.02"


async def _stats(url: str, reset: bool = False) -> dict[str, int]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/bench/stats", params={"reset": "1"} if reset else {}) as resp:
            return dict(await resp.json())


async def _submit(h: Harness, ids: list[str]) -> None:
    """Jobs as the gateway records them (the claim reads each job's operation from its record)."""
    settings = Settings(redis_url=h.redis_url, data_dir=h.data_dir)
    for start in range(0, len(ids), 2000):
        batch = [NewJob(Operation.ifcconvert, CONVERT, i, fresh_id=True) for i in ids[start:start + 2000]]
        made = await job_store.create_many(h.redis, settings, batch)
        if any(isinstance(m, BaseException) for m in made):
            raise BenchError(f"could not create the jobs: {next(m for m in made if isinstance(m, BaseException))}")


async def _capacity_known(h: Harness) -> None:
    """The workers' first health check has read the service's capacity from its /health."""
    for _ in range(600):
        if await h.redis.hget(keys.SERVICE_CAPACITY, "ifcconvert"):  # type: ignore[misc]
            return
        await asyncio.sleep(0.05)
    raise BenchError("the workers never learned the service's capacity")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 10 ms


async def _burst(h: Harness, scope: Scope, url: str, stock: bool) -> dict[str, object]:
    s = h.sizes
    env = h.ifcflow_env(url, poll_delay=POLL_DELAY, max_jobs=str(s.burst_max_jobs))
    procs = await scope.ifcflow_workers(env, s.burst_workers, stock=stock)
    await _capacity_known(h)
    ideal = s.burst_jobs * s.burst_job_s / s.burst_slots
    times: list[float] = []
    busy: list[float] = []
    peaks: list[float] = []
    failed = 0
    async with KeyWatcher(h.redis_url, keys.ARQ_RESULT) as watcher:
        for _ in range(h.rounds):
            await _stats(url, reset=True)
            ids = new_ids(s.burst_jobs)
            watcher.expect(set(ids))
            start = time.perf_counter()
            await _submit(h, ids)
            last = await watcher.wait(within=60 + 4 * ideal)
            times.append(last - start)
            stats = await _stats(url)
            busy.append(stats["busy"] / max(stats["calls"], 1))
            peaks.append(stats["max_in_flight"])
            failed += await failed_arq(h.arq, ids)
    scope.stop(procs)
    total = median(times)
    return {
        "case": f"{s.burst_workers} x {'arq jobs.WorkerSettings' if stock else 'python -m jobs'}",
        "jobs": s.burst_jobs,
        "failed": failed,
        "peak": max(peaks),
        "busy": median(busy),
        "total_s": total,
        "vs_ideal": None if total is None else total / ideal,
    }


async def _idle(h: Harness, scope: Scope) -> dict[str, object]:
    """One worker, its service's slots held by calls that do not end, a deep backlog waiting."""
    s = h.sizes
    url = await scope.stub(3600, slots=s.burst_slots)
    env = h.ifcflow_env(url, poll_delay=POLL_DELAY, max_jobs=str(s.burst_max_jobs))
    [worker] = await scope.ifcflow_workers(env, 1)
    await _capacity_known(h)
    await _submit(h, new_ids(s.burst_idle_jobs))
    for _ in range(600):  # until the service's slots are all taken
        if (await _stats(url))["in_flight"] >= s.burst_slots:
            break
        await asyncio.sleep(0.05)
    redis_before = await h.redis.info("cpu")
    cpu_before, start = _cpu_seconds(worker.pid), time.perf_counter()
    await asyncio.sleep(s.burst_idle_window_s)  # the measurement window itself
    worker_cpu = (_cpu_seconds(worker.pid) - cpu_before) / (time.perf_counter() - start)
    redis_after = await h.redis.info("cpu")
    redis_cpu = sum(float(redis_after[k]) - float(redis_before[k]) for k in ("used_cpu_user", "used_cpu_sys"))
    stats = await _stats(url)
    scope.stop([worker])
    await h.flush()
    return {
        "queued": s.burst_idle_jobs,
        "worker_cpu": worker_cpu,
        "redis_cpu": redis_cpu / s.burst_idle_window_s,
        "busy": stats["busy"],
    }


async def run(h: Harness) -> Section:
    s = h.sizes
    section = Section(
        "burst",
        f"9. Burst: {s.burst_jobs} jobs at once against a service of {s.burst_slots} slots ({s.burst_job_s:g} s "
        f"a call), {s.burst_workers} workers of max_jobs {s.burst_max_jobs}",
        [
            Column("case", "workers"),
            Column("jobs", "jobs", "{:d}"),
            Column("failed", "failed", "{:d}"),
            Column("peak", "most calls at once", "{:d}"),
            Column("busy", "busy answers / calls", "{:.1%}"),
            Column("total_s", "total s", "{:.2f}"),
            Column("vs_ideal", "x ideal", "{:.2f}x"),
        ],
    )
    async with h.scope() as scope:
        url = await scope.stub(s.burst_job_s, slots=s.burst_slots)
        for stock in (False, True):
            section.rows.append(await _burst(h, scope, url, stock))
    async with h.scope() as scope:
        idle = await _idle(h, scope)
    batch = section.rows[0]
    ok = (batch["failed"] == 0 and isinstance(batch["vs_ideal"], float) and batch["vs_ideal"] <= 1.2
          and isinstance(batch["busy"], float) and batch["busy"] <= 0.01)
    section.targets.append(f"python -m jobs: 0 failed, total <= 1.2x ideal, busy <= 1% of calls: {h.judge(ok)}")
    worker_cpu = idle["worker_cpu"]
    idle_ok = isinstance(worker_cpu, float) and worker_cpu < 0.05
    section.targets.append(
        f"{idle['queued']:,} jobs waiting for a full service: the worker uses {worker_cpu:.1%} of a core "
        f"(target < 5%), Redis {idle['redis_cpu']:.1%}: {h.judge(idle_ok)}"
    )
    section.raw["idle"] = idle
    section.notes.append(
        "ideal = jobs x call time / slots; the stand-in answers 503 busy beyond its slots, as the IFC services do, "
        "and says its capacity in /health, which the workers' health check reads; jobs created as the gateway "
        f"creates them, at the start of the timed span, which ends at the last result; poll delay {POLL_DELAY} s"
    )
    return section
