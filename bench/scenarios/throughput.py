"""1. I/O-bound throughput: jobs that each make one 200 ms service call; ifcflow vs RQ, 1 and 4 processes."""

from __future__ import annotations

import asyncio
import time

from bench.harness import RQ_QUEUE, Harness, Scope
from bench.jobs import enqueue_ifcflow, enqueue_rq, failed_arq, new_ids, rq_counts
from bench.procs import BenchError, Proc
from bench.report import Column, Section
from bench.rss import RssSampler, peak_rss_mb
from bench.stats import median, ratio
from bench.watch import KeyWatcher
from store import keys

# Throughput runs poll often so that the start of a run is not up to one default poll (0.5 s) late;
# scenario 4 measures what the poll delay costs.
POLL_DELAY = "0.05"


async def _ifcflow_round(h: Harness, watcher: KeyWatcher, count: int) -> tuple[float, float]:
    """(jobs/s, Redis commands per job) of one round."""
    ids = new_ids(count)
    watcher.expect(set(ids))
    commands = await h.commands_processed()
    start = time.perf_counter()
    await enqueue_ifcflow(h.arq, ids)
    last = await watcher.wait(within=120)
    commands = await h.commands_processed() - commands - 1  # the INFO that reads the total
    failed = await failed_arq(h.arq, ids)
    if failed:
        raise BenchError(f"{failed} of {count} ifcflow jobs failed; see the worker logs in {h.logs}")
    return count / (last - start), commands / count


async def _rq_round(h: Harness, url: str, count: int, procs: list[Proc]) -> tuple[float, float]:
    done_before, failed_before = await rq_counts(h.redis, RQ_QUEUE)
    commands = await h.commands_processed()
    start = time.perf_counter()
    await asyncio.to_thread(enqueue_rq, h.redis_url, RQ_QUEUE, f"{url}/ifcconvert", count)
    deadline = start + 120 + count
    checks = 0
    while True:
        done, failed = await rq_counts(h.redis, RQ_QUEUE)
        checks += 1
        if failed > failed_before:
            raise BenchError(f"RQ jobs failed; see the rq-worker logs in {h.logs}")
        if done - done_before >= count:
            rate = count / (time.perf_counter() - start)
            own = 2 * checks + 1  # this loop's ZCARD pairs and the INFO that reads the total
            return rate, (await h.commands_processed() - commands - own) / count
        if time.perf_counter() > deadline:
            raise BenchError("RQ jobs did not finish in time")
        for p in procs:
            p.check()
        await asyncio.sleep(0.02)


async def _measure(h: Harness, scope: Scope, url: str, system: str, processes: int) -> dict[str, object]:
    s = h.sizes
    rates: list[tuple[float, float]] = []
    if system == "ifcflow":
        env = h.ifcflow_env(url, poll_delay=POLL_DELAY)
        procs = await scope.ifcflow_workers(env, processes)
        count = s.throughput_ifcflow_jobs
        async with KeyWatcher(h.redis_url, keys.ARQ_RESULT) as watcher:
            for _ in range(h.rounds):
                rates.append(await _ifcflow_round(h, watcher, count))
        child_mb = 0.0
    else:
        procs = await scope.rq_workers(processes)
        count = s.throughput_rq_jobs * processes
        async with RssSampler([p.pid for p in procs]) as sampler:
            for _ in range(h.rounds):
                rates.append(await _rq_round(h, url, count, procs))
        child_mb = sampler.max_child_mb
    peaks = [peak_rss_mb(p.pid) or 0.0 for p in procs]
    scope.stop(procs)
    return {
        "system": system,
        "processes": processes,
        "jobs": count,
        "rates": [r[0] for r in rates],
        "jobs_s": median([r[0] for r in rates]),
        "cmds_job": median([r[1] for r in rates]),
        "peak_rss_mb": max(peaks),
        "child_rss_mb": child_mb or None,
    }


async def run(h: Harness) -> Section:
    s = h.sizes
    section = Section(
        "throughput",
        f"1. I/O-bound throughput: each job one {s.service_latency * 1000:.0f} ms service call",
        [
            Column("case", "case"),
            Column("jobs", "jobs/round", "{:d}"),
            Column("jobs_s", "jobs/s", "{:.1f}"),
            Column("vs_rq", "x RQ (same procs)", "{:.1f}x"),
            Column("cmds_job", "Redis cmds/job", "{:.0f}"),
            Column("peak_rss_mb", "peak RSS/process MB", "{:.0f}"),
            Column("child_rss_mb", "work-horse RSS MB", "{:.0f}"),
        ],
    )
    async with h.scope() as scope:
        url = await scope.stub(s.service_latency)
        for processes in s.throughput_processes:
            rq = await _measure(h, scope, url, "rq", processes)
            ifc = await _measure(h, scope, url, "ifcflow", processes)
            ifc["vs_rq"] = ratio(ifc["jobs_s"], rq["jobs_s"])  # type: ignore[arg-type]
            rq["vs_rq"] = 1.0
            for row in (rq, ifc):
                row["case"] = f"{'RQ (rq worker)' if row['system'] == 'rq' else 'ifcflow'}, {processes} process(es)"
                section.rows.append(row)
            section.raw[f"{processes}"] = {"rq": rq["rates"], "ifcflow": ifc["rates"]}
    one = next((r for r in section.rows if r["system"] == "ifcflow" and r["processes"] == 1), None)
    x = one["vs_rq"] if one else None
    met = None if not isinstance(x, float) else x >= 100
    section.targets.append(f"one ifcflow worker process >= 100x the jobs/s of one RQ worker process: {h.judge(met)}")
    section.notes.append(
        f"same Redis, same stand-in service; RQ's default forking worker, one job at a time per process; "
        f"ifcflow with max_jobs 500 and poll delay {POLL_DELAY} s; peak RSS is VmHWM of the worker process, "
        "work-horse RSS the largest forked RQ child seen; Redis commands per job include enqueueing and the "
        "workers' polls, not the bench's own completion checks"
    )
    return section
