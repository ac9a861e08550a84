"""2. Overhead: no-op jobs end to end through the gateway and one worker vs raw arq's enqueue_job + no-op,
and vs Celery and SAQ running the same job (one call to a service that answers at once) on one worker process."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator

from bench.cpu import cpu_seconds
from bench.harness import API_KEY, Harness
from bench.jobs import CONVERT, MAX_JOBS, enqueue_arq, enqueue_ifcflow, failed_arq, new_ids
from bench.loadgen import json_request, send_many
from bench.peers.measure import Round, ahead, peers_of, timed_round
from bench.procs import BenchError
from bench.raw_arq import QUEUE as RAW_ARQ_QUEUE
from bench.report import Column, Section
from bench.stats import median, ratio
from bench.watch import KeyWatcher
from store import keys

POLL_DELAY = "0.05"  # both workers: see scenario 1; scenario 4 measures the poll delay itself


async def _ifcflow_round(h: Harness, gateway_url: str, watcher: KeyWatcher) -> tuple[float, float]:
    s = h.sizes
    body = {**CONVERT, "input_filename": "model.ifc"}
    raw = json_request(gateway_url, "/ifcconvert", body, {"X-API-Key": API_KEY})
    start = time.perf_counter()
    sent = await send_many(gateway_url, lambda _: raw, s.overhead_jobs, s.overhead_clients, expect=202)
    submitted = time.perf_counter()
    if sent.errors:
        raise BenchError(f"{sent.errors} submissions were not answered 202")
    ids = [json.loads(b)["job_id"] for b in sent.bodies]
    watcher.expect(set(ids))
    last = await watcher.wait(within=120)
    failed = await failed_arq(h.arq, ids)
    if failed:
        raise BenchError(f"{failed} ifcflow jobs failed; see the worker log in {h.logs}")
    return len(ids) / (last - start), len(ids) / (submitted - start)


async def _raw_round(h: Harness, watcher: KeyWatcher) -> tuple[float, float]:
    s = h.sizes
    ids = new_ids(s.overhead_jobs)
    watcher.expect(set(ids))
    start = time.perf_counter()
    await enqueue_arq(h.arq, "noop", ids, {}, queue=RAW_ARQ_QUEUE, concurrency=s.overhead_clients)
    submitted = time.perf_counter()
    last = await watcher.wait(within=120)
    return len(ids) / (last - start), len(ids) / (submitted - start)


async def _direct_round(h: Harness, watcher: KeyWatcher) -> tuple[float, float]:
    """ifcflow's worker fed as the peers are: jobs enqueued straight into its queue by its store's own
    enqueue (``store.job_store.create``, as the peers' by their clients), no gateway."""
    s = h.sizes
    ids = new_ids(s.overhead_jobs)
    watcher.expect(set(ids))
    start = time.perf_counter()
    await enqueue_ifcflow(h.arq, ids, concurrency=s.overhead_clients)
    submitted = time.perf_counter()
    last = await watcher.wait(within=120)
    if await failed_arq(h.arq, ids):
        raise BenchError(f"ifcflow jobs failed; see the worker log in {h.logs}")
    return len(ids) / (last - start), len(ids) / (submitted - start)


@contextlib.contextmanager
def _cpu(into: list[float], pids: list[int], jobs: int) -> Iterator[None]:
    """Appends the CPU milliseconds per job ``pids`` used within the block."""
    before = cpu_seconds(pids)
    yield
    into.append((cpu_seconds(pids) - before) * 1000 / jobs)


async def run(h: Harness) -> Section:
    s = h.sizes
    peers, missing = peers_of(h)
    section = Section(
        "overhead",
        "2. Overhead: no-op jobs, end to end (submit to result), one worker process",
        [
            Column("case", "case"),
            Column("jobs", "jobs/round", "{:d}"),
            Column("jobs_s", "jobs/s end to end", "{:.0f}"),
            Column("vs_raw", "of raw arq", "{:.0%}"),
            Column("ifcflow_ahead", "ifcflow x", "{:.2f}x"),
            Column("submit_s", "submits/s", "{:.0f}"),
            Column("cpu_ms_job", "worker CPU ms/job", "{:.2f}"),
            Column("cpu_ahead", "ifcflow x (CPU/job)", "{:.1f}x"),
        ],
    )
    ifc: list[tuple[float, float]] = []
    raw: list[tuple[float, float]] = []
    direct: list[tuple[float, float]] = []
    cpu: dict[str, list[float]] = {"ifcflow": [], "raw": [], "direct": []}
    peer_rounds: dict[str, list[Round]] = {p.key: [] for p in peers}
    async with h.scope() as scope:
        url = await scope.stub(0.0)
        env = h.ifcflow_env(url, poll_delay=POLL_DELAY)
        gateway = await scope.gateway(env)
        [worker] = await scope.ifcflow_workers(env)
        raw_worker = await scope.raw_arq_worker(env)
        fleets = [await peer.start(scope, 1, 1 if peer.one_job_per_process else MAX_JOBS) for peer in peers]
        async with contextlib.AsyncExitStack() as stack:
            watcher = await stack.enter_async_context(KeyWatcher(h.redis_url, keys.ARQ_RESULT))
            peer_watchers = [await stack.enter_async_context(p.watcher(h)) for p in peers]
            for _ in range(h.rounds):  # alternate, so drift on the machine hits all alike
                with _cpu(cpu["ifcflow"], [worker.pid], s.overhead_jobs):
                    ifc.append(await _ifcflow_round(h, gateway.url, watcher))
                with _cpu(cpu["raw"], [raw_worker.pid], s.overhead_jobs):
                    raw.append(await _raw_round(h, watcher))
                if peers:
                    with _cpu(cpu["direct"], [worker.pid], s.overhead_jobs):
                        direct.append(await _direct_round(h, watcher))
                for peer, peer_watcher, fleet in zip(peers, peer_watchers, fleets, strict=True):
                    peer_rounds[peer.key].append(await timed_round(
                        h, peer, peer_watcher, url, s.overhead_jobs, concurrency=s.overhead_clients, pids=fleet.pids,
                    ))
    raw_rate = median([r[0] for r in raw])
    ifc_rate = median([r[0] for r in ifc])
    direct_rate = median([r[0] for r in direct])
    section.rows = [
        {"case": "raw arq: enqueue_job + no-op function", "jobs": s.overhead_jobs, "jobs_s": raw_rate,
         "vs_raw": 1.0, "submit_s": median([r[1] for r in raw]), "cpu_ms_job": median(cpu["raw"])},
    ]
    for peer in peers:
        rounds = peer_rounds[peer.key]
        rate = median([r.rate(s.overhead_jobs) for r in rounds])
        section.rows.append({
            "case": f"{peer.label}: enqueue + one call to the stand-in service", "system": peer.key,
            "jobs": s.overhead_jobs, "jobs_s": rate, "vs_raw": ratio(rate, raw_rate),
            "ifcflow_ahead": ahead(direct_rate, rate),
            "submit_s": median([s.overhead_jobs / r.submit_seconds for r in rounds]),
            "cpu_ms_job": median([r.cpu_ms_job for r in rounds]),
            "cpu_ahead": ratio(median([r.cpu_ms_job for r in rounds]), median(cpu["direct"])),
        })
    section.rows.append(
        {"case": "ifcflow: POST /ifcconvert -> worker -> stand-in service", "system": "ifcflow",
         "jobs": s.overhead_jobs, "jobs_s": ifc_rate, "vs_raw": ratio(ifc_rate, raw_rate),
         "submit_s": median([r[1] for r in ifc]), "cpu_ms_job": median(cpu["ifcflow"])},
    )
    if peers:
        section.rows.append(
            {"case": "ifcflow: job_store.create, as the peers are fed -> worker -> stand-in service",
             "system": "ifcflow-direct", "jobs": s.overhead_jobs, "jobs_s": direct_rate,
             "vs_raw": ratio(direct_rate, raw_rate), "submit_s": median([r[1] for r in direct]),
             "cpu_ms_job": median(cpu["direct"])},
        )
    section.raw = {"ifcflow": ifc, "raw_arq": raw, "ifcflow_direct": direct}
    section.raw.update({k: [r.seconds for r in v] for k, v in peer_rounds.items()})
    share = ratio(ifc_rate, raw_rate)
    section.targets.append(
        f"ifcflow end to end >= 50% of raw arq's jobs/s: {h.judge(None if share is None else share >= 0.5)}"
    )
    leads = [r["ifcflow_ahead"] for r in section.rows if "ifcflow_ahead" in r]
    if leads:
        ok = all(isinstance(v, float) and v > 1 for v in leads)
        section.targets.append(f"ifcflow ahead of each peer, one worker process each, fed alike: {h.judge(ok)}")
    section.notes.append(
        f"{s.overhead_clients} concurrent submitters (HTTP keep-alive connections, or arq clients); "
        f"both workers max_jobs {MAX_JOBS}, poll delay {POLL_DELAY} s, msgpack serializer, abort support on; "
        "the stand-in service answers at once"
    )
    if peers:
        section.notes.append(
            f"peers: jobs enqueued straight into their queues by {s.overhead_clients} concurrent clients (no "
            "gateway), each one POST of ifcflow's body to the same stand-in service; one worker process: Celery "
            f"threads and SAQ {MAX_JOBS} jobs at once, Celery prefork one child (and its parent); ifcflow x is the "
            "jobs/s of ifcflow's worker fed the same way (the last row) over the peer's, ifcflow x (CPU/job) "
            "the peer's worker CPU per job over that row's; worker CPU is the worker process's (and its "
            "children's), not the gateway's; every kind's rounds take turns"
        )
    section.notes += missing
    return section
