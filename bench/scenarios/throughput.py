"""1. I/O-bound throughput: jobs that each make one 200 ms service call; ifcflow vs RQ, Celery and SAQ, 1 and 4
processes."""

from __future__ import annotations

import asyncio
import time

from bench.cpu import cpu_seconds
from bench.harness import RQ_QUEUE, Harness, Scope
from bench.jobs import MAX_JOBS, enqueue_ifcflow, enqueue_rq, failed_arq, new_ids, rq_counts
from bench.peers.drivers import Peer
from bench.peers.measure import ahead, peers_of, timed_round
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


async def _measure_peer(h: Harness, scope: Scope, url: str, peer: Peer, processes: int) -> dict[str, object]:
    """``processes`` worker processes of the peer (prefork: one worker of that many children)."""
    s = h.sizes
    if peer.one_job_per_process:
        fleet = await peer.start(scope, 1, processes)
        count = s.throughput_prefork_jobs * processes
    else:
        fleet = await peer.start(scope, processes, MAX_JOBS)
        count = s.throughput_peer_jobs
    rounds = []
    async with peer.watcher(h) as watcher:
        for _ in range(h.rounds):
            rounds.append(await timed_round(h, peer, watcher, url, count, pids=fleet.pids))
    row: dict[str, object] = {
        "system": peer.key,
        "processes": processes,
        "jobs": count,
        "rates": [r.rate(count) for r in rounds],
        "jobs_s": median([r.rate(count) for r in rounds]),
        "cmds_job": median([r.cmds_job for r in rounds]),
        "cpu_ms_job": median([r.cpu_ms_job for r in rounds]),
        "peak_rss_mb": fleet.peak_rss_mb(),
        "child_rss_mb": fleet.child_rss_mb(),
        "label": peer.label,
    }
    scope.stop(fleet.procs)
    return row


async def _measure(h: Harness, scope: Scope, url: str, system: str, processes: int) -> dict[str, object]:
    s = h.sizes
    rates: list[tuple[float, float]] = []
    cpu: list[float] = []
    if system == "ifcflow":
        env = h.ifcflow_env(url, poll_delay=POLL_DELAY)
        procs = await scope.ifcflow_workers(env, processes)
        pids = [p.pid for p in procs]
        count = s.throughput_ifcflow_jobs
        async with KeyWatcher(h.redis_url, keys.ARQ_RESULT) as watcher:
            for _ in range(h.rounds):
                before = cpu_seconds(pids)
                rates.append(await _ifcflow_round(h, watcher, count))
                cpu.append((cpu_seconds(pids) - before) * 1000 / count)
        child_mb = 0.0
    else:
        procs = await scope.rq_workers(processes)
        pids = [p.pid for p in procs]
        count = s.throughput_rq_jobs * processes
        async with RssSampler(pids) as sampler:
            for _ in range(h.rounds):
                before = cpu_seconds(pids)
                rates.append(await _rq_round(h, url, count, procs))
                cpu.append((cpu_seconds(pids) - before) * 1000 / count)
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
        "cpu_ms_job": median(cpu),
        "peak_rss_mb": max(peaks),
        "child_rss_mb": child_mb or None,
    }


async def run(h: Harness) -> Section:
    s = h.sizes
    peers, missing = peers_of(h)
    section = Section(
        "throughput",
        f"1. I/O-bound throughput: each job one {s.service_latency * 1000:.0f} ms service call",
        [
            Column("case", "case"),
            Column("jobs", "jobs/round", "{:d}"),
            Column("jobs_s", "jobs/s", "{:.1f}"),
            Column("per_process", "jobs/s per process", "{:.1f}"),
            Column("ifcflow_ahead", "ifcflow x (per process)", "{:.1f}x"),
            Column("vs_rq", "x RQ (same procs)", "{:.1f}x"),
            Column("cmds_job", "Redis cmds/job", "{:.0f}"),
            Column("cpu_ms_job", "worker CPU ms/job", "{:.2f}"),
            Column("cpu_ahead", "ifcflow x (CPU/job)", "{:.1f}x"),
            Column("peak_rss_mb", "peak RSS/process MB", "{:.0f}"),
            Column("child_rss_mb", "child RSS MB", "{:.0f}"),
        ],
    )
    async with h.scope() as scope:
        url = await scope.stub(s.service_latency)
        for processes in s.throughput_processes:
            rq = await _measure(h, scope, url, "rq", processes)
            rq["label"] = "RQ (rq worker)"
            first = processes == s.throughput_processes[0]
            measured = peers if first or not s.peers_first_size_only else []
            others = [await _measure_peer(h, scope, url, peer, processes) for peer in measured]
            ifc = await _measure(h, scope, url, "ifcflow", processes)
            ifc["label"] = "ifcflow"
            ifc["vs_rq"] = ratio(ifc["jobs_s"], rq["jobs_s"])  # type: ignore[arg-type]
            rq["vs_rq"] = 1.0
            group = [rq, *others, ifc]
            for row in group:
                row["per_process"] = ratio(row["jobs_s"], processes)  # type: ignore[arg-type]
            for row in group[:-1]:
                row["ifcflow_ahead"] = ahead(ifc["per_process"], row["per_process"])  # type: ignore[arg-type]
                row["cpu_ahead"] = ratio(row["cpu_ms_job"], ifc["cpu_ms_job"])  # type: ignore[arg-type]
            for row in group:
                row["case"] = f"{row.pop('label')}, {processes} process(es)"
                section.rows.append(row)
            section.raw[f"{processes}"] = {str(r["system"]): r["rates"] for r in group}
    one = next((r for r in section.rows if r["system"] == "ifcflow" and r["processes"] == 1), None)
    x = one["vs_rq"] if one else None
    met = None if not isinstance(x, float) else x >= 100
    section.targets.append(f"one ifcflow worker process >= 100x the jobs/s of one RQ worker process: {h.judge(met)}")
    leads = [r["ifcflow_ahead"] for r in section.rows if r["system"] not in ("rq", "ifcflow")]
    if leads:
        ok = all(isinstance(v, float) and v > 1 for v in leads)
        section.targets.append(f"ifcflow ahead of each peer per worker process, at every process count: {h.judge(ok)}")
    section.notes.append(
        f"same Redis, same stand-in service; RQ's default forking worker, one job at a time per process; "
        f"ifcflow with max_jobs {MAX_JOBS} and poll delay {POLL_DELAY} s; peak RSS is VmHWM of the worker process, "
        "child RSS the largest forked child seen (RQ's work horses, Celery prefork's pool); Redis commands per "
        "job include enqueueing and the workers' polls, not the bench's own completion checks"
    )
    if peers:
        section.notes.append(
            f"peers: the same POST (the body ifcflow's worker sends) to the same service URL; Celery with the "
            f"threads pool and SAQ run {MAX_JOBS} jobs at once per process ({s.throughput_peer_jobs} jobs a round); "
            "Celery's prefork pool runs one job per child process, so 'N process(es)' is one worker of N children "
            f"(its parent, which takes messages from the broker, is not counted; {s.throughput_prefork_jobs} jobs "
            "per child a round); ifcflow x (per process) is ifcflow's jobs/s per process over the row's"
        )
    section.notes += missing
    return section
