"""8. Fleet capacity: 1, 2, 4, 8 worker processes on one queue, a backlog of several fleet capacities.

What it shows: N workers with ``max_jobs`` M each hold N x M jobs in flight, however many of the
queue's first ids are already running. The batch-claiming worker (``python -m jobs``) is measured at
every size, and arq's own claims (``arq jobs.WorkerSettings``) beside it at the larger ones. The peers
(Celery's prefork and threads pools, SAQ) run the same jobs with the same slots per worker at every size.
"""

from __future__ import annotations

import time

import aiohttp

from bench.cpu import cpu_seconds
from bench.harness import Harness, Scope
from bench.jobs import enqueue_ifcflow, failed_arq, new_ids
from bench.peers.drivers import Peer
from bench.peers.measure import ahead, peers_of, timed_round
from bench.procs import BenchError
from bench.report import Column, Section
from bench.stats import median, ratio
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
    cpus: list[float] = []
    async with KeyWatcher(h.redis_url, keys.ARQ_RESULT) as watcher:
        for _ in range(h.rounds):
            await _stats(url, reset=True)
            ids = new_ids(jobs)
            watcher.expect(set(ids))
            cpu = cpu_seconds([p.pid for p in procs])
            start = time.perf_counter()
            await enqueue_ifcflow(h.arq, ids)
            last = await watcher.wait(within=60 + 4 * ideal)
            times.append(last - start)
            cpus.append((cpu_seconds([p.pid for p in procs]) - cpu) * 1000 / jobs)
            peaks.append((await _stats(url))["max_in_flight"] / capacity)
            if await failed_arq(h.arq, ids):
                raise BenchError(f"jobs failed; see the worker logs in {h.logs}")
    scope.stop(procs)
    total = median(times)
    return {
        "case": f"{workers} x {'arq jobs.WorkerSettings' if stock else 'python -m jobs'}",
        "system": "ifcflow-stock" if stock else "ifcflow",
        "workers": workers,
        "processes": workers,
        "cpu_ms_job": median(cpus),
        "capacity": capacity,
        "jobs": jobs,
        "peak": median(peaks),
        "total_s": total,
        "vs_ideal": None if total is None else total / ideal,
        "times": times,
        "peaks": peaks,
    }


async def _peer_case(h: Harness, scope: Scope, url: str, peer: Peer, workers: int) -> dict[str, object]:
    """The same backlog for ``workers`` of the peer's workers, each of ``fleet_max_jobs`` slots."""
    s = h.sizes
    capacity = workers * s.fleet_max_jobs
    jobs = capacity * s.fleet_backlog
    ideal = s.fleet_backlog * s.fleet_job_s
    fleet = await peer.start(scope, workers, s.fleet_max_jobs)
    peaks: list[float] = []
    times: list[float] = []
    cpus: list[float] = []
    async with peer.watcher(h) as watcher:
        for _ in range(h.rounds):
            await _stats(url, reset=True)
            done = await timed_round(h, peer, watcher, url, jobs, within=60 + 4 * ideal, pids=fleet.pids)
            times.append(done.seconds)
            cpus.append(done.cpu_ms_job or 0.0)
            peaks.append((await _stats(url))["max_in_flight"] / capacity)
    scope.stop(fleet.procs)
    total = median(times)
    return {
        "case": f"{workers} x {peer.label}",
        "system": peer.key,
        "workers": workers,
        "processes": fleet.job_processes,
        "cpu_ms_job": median(cpus),
        "capacity": capacity,
        "jobs": jobs,
        "peak": median(peaks),
        "total_s": total,
        "vs_ideal": None if total is None else total / ideal,
        "times": times,
        "peaks": peaks,
    }


def _per_process(rows: list[dict[str, object]]) -> None:
    """jobs/s per process of each row, and ifcflow's (``python -m jobs``, same workers) over the peers'."""
    for row in rows:
        total, jobs, processes = row["total_s"], row["jobs"], row["processes"]
        per = ratio(float(jobs) / total, float(processes)) if isinstance(total, float) else None  # type: ignore[arg-type]
        row["per_process"] = per
    ours = {r["workers"]: r["per_process"] for r in rows if r["system"] == "ifcflow"}
    for row in rows:
        if row["system"] not in ("ifcflow", "ifcflow-stock"):
            row["ifcflow_ahead"] = ahead(ours.get(row["workers"]), row["per_process"])  # type: ignore[arg-type]


async def run(h: Harness) -> Section:
    s = h.sizes
    section = Section(
        "fleet",
        f"8. Fleet capacity: max_jobs {s.fleet_max_jobs} per worker, jobs of {s.fleet_job_s:g} s, "
        f"a backlog of {s.fleet_backlog}x the fleet's capacity",
        [
            Column("case", "workers"),
            Column("processes", "job processes", "{:d}"),
            Column("capacity", "slots", "{:d}"),
            Column("jobs", "jobs", "{:d}"),
            Column("peak", "peak in flight / slots", "{:.2f}"),
            Column("total_s", "total s", "{:.2f}"),
            Column("vs_ideal", "x ideal", "{:.2f}x"),
            Column("per_process", "jobs/s per process", "{:.2f}"),
            Column("ifcflow_ahead", "ifcflow x (per process)", "{:.1f}x"),
            Column("cpu_ms_job", "worker CPU ms/job", "{:.2f}"),
        ],
    )
    peers, missing = peers_of(h)
    async with h.scope() as scope:
        url = await scope.stub(s.fleet_job_s)
        for workers in s.fleet_workers:
            for stock in (False, True) if workers > 1 and workers in s.fleet_workers[-2:] else (False,):
                row = await _case(h, scope, url, workers, stock)
                section.raw[str(row["case"])] = {"times": row.pop("times"), "peaks": row.pop("peaks")}
                section.rows.append(row)
            first = workers == s.fleet_workers[0]
            for peer in peers if first or not s.peers_first_size_only else []:
                row = await _peer_case(h, scope, url, peer, workers)
                section.raw[str(row["case"])] = {"times": row.pop("times"), "peaks": row.pop("peaks")}
                section.rows.append(row)
    _per_process(section.rows)
    batch = [r for r in section.rows if r["system"] == "ifcflow"]
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
    leads = [r["ifcflow_ahead"] for r in section.rows if "ifcflow_ahead" in r]
    if leads:
        ok = all(isinstance(v, float) and v > 1 for v in leads)
        section.targets.append(f"python -m jobs ahead of each peer per process, at every size: {h.judge(ok)}")
        section.notes.append(
            f"peers: each worker has the same {s.fleet_max_jobs} slots as an ifcflow worker (SAQ concurrency, "
            f"Celery threads), so the fleet's slots and backlog are the same; Celery's prefork pool runs one job "
            f"per child, so each of its workers is {s.fleet_max_jobs} children (job processes; the parents not "
            "counted); jobs/s per process = jobs / total s / job processes; ifcflow x (per process) is python -m "
            "jobs' figure at the same worker count over the row's"
        )
    section.notes += missing
    return section
