"""5. Concurrency and memory: 1,000 jobs of 2 s each in flight at once on one worker process."""

from __future__ import annotations

import asyncio
import time

from bench.harness import Harness, Scope
from bench.jobs import enqueue_ifcflow, failed_arq, new_ids
from bench.procs import BenchError
from bench.report import Column, Section
from bench.rss import peak_rss_mb, rss_mb
from bench.stats import median
from bench.watch import KeyWatcher
from settings import Settings
from store import keys

POLL_DELAY = "0.05"  # as in scenario 1
DEFAULT_MAX_JOBS = Settings.model_fields["max_jobs"].default


async def _case(h: Harness, scope: Scope, url: str, max_jobs: int) -> dict[str, object]:
    s = h.sizes
    workers = await scope.ifcflow_workers(h.ifcflow_env(url, poll_delay=POLL_DELAY, max_jobs=str(max_jobs)))
    pid = workers[0].pid
    await asyncio.sleep(0.5)
    idle = rss_mb(pid)
    times: list[float] = []
    async with KeyWatcher(h.redis_url, keys.ARQ_RESULT) as watcher:
        for _ in range(h.rounds):
            ids = new_ids(s.concurrency_jobs)
            watcher.expect(set(ids))
            start = time.perf_counter()
            await enqueue_ifcflow(h.arq, ids)
            last = await watcher.wait(within=60 + 10 * s.concurrency_job_s)
            times.append(last - start)
            if await failed_arq(h.arq, ids):
                raise BenchError(f"jobs failed; see the worker log in {h.logs}")
    peak = peak_rss_mb(pid)
    scope.stop(workers)
    total = median(times)
    return {
        "case": f"max_jobs {max_jobs}" + (" (default)" if max_jobs == DEFAULT_MAX_JOBS else ""),
        "jobs": s.concurrency_jobs,
        "total_s": total,
        "vs_ideal": None if total is None else total / s.concurrency_job_s,
        "idle_mb": idle,
        "peak_mb": peak,
        "times": times,
    }


async def run(h: Harness) -> Section:
    s = h.sizes
    section = Section(
        "concurrency",
        f"5. Concurrency and memory: {s.concurrency_jobs} jobs of {s.concurrency_job_s:g} s at once, "
        "one worker process",
        [
            Column("case", "worker"),
            Column("jobs", "jobs", "{:d}"),
            Column("total_s", "total s", "{:.2f}"),
            Column("vs_ideal", f"x ideal ({s.concurrency_job_s:g} s)", "{:.2f}x"),
            Column("idle_mb", "RSS idle MB", "{:.0f}"),
            Column("peak_mb", "peak RSS MB", "{:.0f}"),
        ],
    )
    async with h.scope() as scope:
        url = await scope.stub(s.concurrency_job_s)
        for max_jobs in (s.concurrency_jobs, DEFAULT_MAX_JOBS):
            if max_jobs == DEFAULT_MAX_JOBS and s.concurrency_jobs <= DEFAULT_MAX_JOBS and section.rows:
                break  # quick sizes: the default already holds every job
            row = await _case(h, scope, url, max_jobs)
            section.raw[str(row["case"])] = row.pop("times")
            section.rows.append(row)
    first = section.rows[0]
    ok = (
        isinstance(first["peak_mb"], float) and first["peak_mb"] < 200
        and isinstance(first["vs_ideal"], float) and first["vs_ideal"] <= 1.5
    )
    section.targets.append(f"with every job in flight: under 200 MB and within 1.5x the ideal: {h.judge(ok)}")
    section.notes.append(
        "jobs enqueued straight into arq (as the gateway does) at the start of the timed span, which ends at the "
        f"last result; stand-in service sleeps {s.concurrency_job_s:g} s per call; poll delay {POLL_DELAY} s; "
        "peak RSS is the worker's VmHWM"
    )
    return section
