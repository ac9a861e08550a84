"""2. Overhead: no-op jobs end to end through the gateway and one worker vs raw arq's enqueue_job + no-op."""

from __future__ import annotations

import json
import time

from bench.harness import API_KEY, Harness
from bench.jobs import CONVERT, enqueue_arq, failed_arq, new_ids
from bench.loadgen import json_request, send_many
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


async def run(h: Harness) -> Section:
    s = h.sizes
    section = Section(
        "overhead",
        "2. Overhead: no-op jobs, end to end (submit to result), one worker process",
        [
            Column("case", "case"),
            Column("jobs", "jobs/round", "{:d}"),
            Column("jobs_s", "jobs/s end to end", "{:.0f}"),
            Column("vs_raw", "of raw arq", "{:.0%}"),
            Column("submit_s", "submits/s", "{:.0f}"),
        ],
    )
    ifc: list[tuple[float, float]] = []
    raw: list[tuple[float, float]] = []
    async with h.scope() as scope:
        url = await scope.stub(0.0)
        env = h.ifcflow_env(url, poll_delay=POLL_DELAY)
        gateway = await scope.gateway(env)
        await scope.ifcflow_workers(env)
        await scope.raw_arq_worker(env)
        async with KeyWatcher(h.redis_url, keys.ARQ_RESULT) as watcher:
            for _ in range(h.rounds):  # alternate, so drift on the machine hits both alike
                ifc.append(await _ifcflow_round(h, gateway.url, watcher))
                raw.append(await _raw_round(h, watcher))
    raw_rate = median([r[0] for r in raw])
    ifc_rate = median([r[0] for r in ifc])
    section.rows = [
        {"case": "raw arq: enqueue_job + no-op function", "jobs": s.overhead_jobs, "jobs_s": raw_rate,
         "vs_raw": 1.0, "submit_s": median([r[1] for r in raw])},
        {"case": "ifcflow: POST /ifcconvert -> worker -> stand-in service", "jobs": s.overhead_jobs,
         "jobs_s": ifc_rate, "vs_raw": ratio(ifc_rate, raw_rate), "submit_s": median([r[1] for r in ifc])},
    ]
    section.raw = {"ifcflow": ifc, "raw_arq": raw}
    share = ratio(ifc_rate, raw_rate)
    section.targets.append(
        f"ifcflow end to end >= 50% of raw arq's jobs/s: {h.judge(None if share is None else share >= 0.5)}"
    )
    section.notes.append(
        f"{s.overhead_clients} concurrent submitters (HTTP keep-alive connections, or arq clients); "
        f"both workers max_jobs 500, poll delay {POLL_DELAY} s, msgpack serializer, abort support on; "
        "the stand-in service answers at once"
    )
    return section
