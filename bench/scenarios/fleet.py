"""8. Fleet capacity: 1, 2, 4, 8 worker processes on one queue, a backlog of several fleet capacities.

What it shows: N workers with ``max_jobs`` M each hold N x M jobs in flight, however many of the
queue's first ids are already running. The batch-claiming worker (``python -m jobs``) is measured at
every size, and arq's own claims (``arq jobs.WorkerSettings``) beside it at the larger ones.
"""

from __future__ import annotations

import time

import aiohttp

from bench.harness import Harness, Scope
from bench.jobs import enqueue_ifcflow, failed_arq, new_ids
from bench.procs import BenchError
from bench.report import Column, Section
from bench.stats import median
from bench.watch import KeyWatcher
from store import keys

POLL_DELAY = "0.05"


async def _stats(url: str, reset: bool = False) -> dict[str, int]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/bench/stats", params={"reset": "1"} if reset else {}) as resp:
            return dict(await resp.json())


async def _case(h: Harness, scope: Scope, url: str, workers: int, stock: bool) -> dict[str, object]:
    s = h.sizes
    capacity = workers * s.fleet_max_jobs
    jobs = capacity * s.fleet_backlog
    ideal = s.fleet_backlog * s.fleet_job_s
    env = h.ifcflow_env(url, poll_delay=POLL_DELAY, max_jobs=str(s.fleet_max_jobs))
    procs = await scope.ifcflow_workers(env, workers, stock=stock)
    peaks: list[float] = []
    times: list[float] = []
    async with KeyWatcher(h.redis_url, keys.ARQ_RESULT) as watcher:
        for _ in range(h.rounds):
            await _stats(url, reset=True)
            ids = new_ids(jobs)
            watcher.expect(set(ids))
            start = time.perf_counter()
            await enqueue_ifcflow(h.arq, ids)
            last = await watcher.wait(within=60 + 4 * ideal)
            times.append(last - start)
            peaks.append((await _stats(url))["max_in_flight"] / capacity)
            if await failed_arq(h.arq, ids):
                raise BenchError(f"jobs failed; see the worker logs in {h.logs}")
    scope.stop(procs)
    total = median(times)
    return {
        "case": f"{workers} x {'arq jobs.WorkerSettings' if stock else 'python -m jobs'}",
        "capacity": capacity,
        "jobs": jobs,
        "peak": median(peaks),
        "total_s": total,
        "vs_ideal": None if total is None else total / ideal,
        "times": times,
        "peaks": peaks,
    }


async def run(h: Harness) -> Section:
    s = h.sizes
    section = Section(
        "fleet",
        f"8. Fleet capacity: max_jobs {s.fleet_max_jobs} per worker, jobs of {s.fleet_job_s:g} s, "
        f"a backlog of {s.fleet_backlog}x the fleet's capacity",
        [
            Column("case", "workers"),
            Column("capacity", "slots", "{:d}"),
            Column("jobs", "jobs", "{:d}"),
            Column("peak", "peak in flight / slots", "{:.2f}"),
            Column("total_s", "total s", "{:.2f}"),
            Column("vs_ideal", "x ideal", "{:.2f}x"),
        ],
    )
    async with h.scope() as scope:
        url = await scope.stub(s.fleet_job_s)
        for workers in s.fleet_workers:
            for stock in (False, True) if workers > 1 and workers in s.fleet_workers[-2:] else (False,):
                row = await _case(h, scope, url, workers, stock)
                section.raw[str(row["case"])] = {"times": row.pop("times"), "peaks": row.pop("peaks")}
                section.rows.append(row)
    batch = [r for r in section.rows if "python -m jobs" in str(r["case"])]
    ok = all(
        isinstance(r["peak"], float) and r["peak"] >= 0.95
        and isinstance(r["vs_ideal"], float) and r["vs_ideal"] <= 1.15
        for r in batch
    )
    section.targets.append(f"python -m jobs: peak >= 0.95 of the slots and total <= 1.15x ideal: {h.judge(ok)}")
    section.notes.append(
        "jobs enqueued straight into arq at the start of the timed span, which ends at the last result; the "
        "stand-in service counts calls in flight (its peak is the fleet's); ideal = backlog x job time; "
        f"poll delay {POLL_DELAY} s"
    )
    return section
