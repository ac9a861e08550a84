"""12. Fair share: one job of project B submitted behind a backlog of project A, on real workers.

What it shows: the claim (``store/lua/claim.lua``) shares a queue's slots between its projects, so B's
job starts at the next freed slot however deep A's backlog is. Measured as B's wait in slot turnovers:
jobs of A that started between B's submit and B's start, divided by the slots. The baseline, in the
same run, is the same submit as a job of A (one project: the queue order of before), which waits for
the whole backlog.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from bench.harness import Harness, Scope
from bench.jobs import CONVERT, new_ids
from bench.procs import BenchError
from bench.report import Column, Section
from bench.stats import median
from contracts.operations import Operation
from settings import Settings
from store import job_store, keys
from store.job_store import NewJob

POLL_DELAY = "0.02"
# (backlog of A, worker slots, seconds per service call): full and --quick.
FULL = (10_000, 20, 0.02)
QUICK = (200, 4, 0.01)


async def _submit(h: Harness, ids: list[str], project: str) -> None:
    settings = Settings(redis_url=h.redis_url, data_dir=h.data_dir)
    for start in range(0, len(ids), 2000):
        batch = [NewJob(Operation.ifcconvert, CONVERT, i, project=project, fresh_id=True)
                 for i in ids[start:start + 2000]]
        made = await job_store.create_many(h.redis, settings, batch)
        if any(isinstance(m, BaseException) for m in made):
            raise BenchError(f"could not create the jobs: {next(m for m in made if isinstance(m, BaseException))}")


async def _started(h: Harness, ids: list[str]) -> list[int]:
    """Start times (ms) of those of ``ids`` that started."""
    out: list[int] = []
    for start in range(0, len(ids), 5000):
        async with h.redis.pipeline(transaction=False) as pipe:
            for job_id in ids[start:start + 5000]:
                pipe.hget(keys.job_meta(job_id), "started_at")
            out += [int(v) for v in await pipe.execute() if v is not None]
    return out


async def _until(probe: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await probe():
        if time.monotonic() > deadline:
            raise BenchError(f"{what} within {within:.0f} s")
        await asyncio.sleep(0.005)


async def _round(h: Harness, scope: Scope, url: str, fair: bool) -> tuple[int, float]:
    """B's wait (jobs of A started meanwhile, seconds) behind a fresh backlog of A on a fresh worker."""
    backlog, slots, call_s = QUICK if h.quick else FULL
    a_ids = new_ids(backlog)
    await _submit(h, a_ids, "A")
    procs = await scope.ifcflow_workers(h.ifcflow_env(url, poll_delay=POLL_DELAY, max_jobs=str(slots)), 1)

    async def warm() -> bool:  # the worker runs A's jobs at full pace, every slot taken
        return len(await _started(h, a_ids[: 4 * slots])) >= 2 * slots

    await _until(warm, 60, "the worker did not start A's jobs")
    [b] = new_ids(1)
    submitted = job_store.now_ms()
    await _submit(h, [b], "B" if fair else "A")

    async def b_started() -> bool:
        return bool(await h.redis.hget(keys.job_meta(b), "started_at"))

    await _until(b_started, 60 + 4 * backlog * call_s / slots, "B's job did not start")
    b_start = int(await h.redis.hget(keys.job_meta(b), "started_at"))
    between = sum(1 for t in await _started(h, a_ids) if submitted <= t <= b_start)
    scope.stop(procs)
    await h.flush()
    return between, (b_start - submitted) / 1000


async def _case(h: Harness, scope: Scope, url: str, fair: bool) -> dict[str, object]:
    backlog, slots, _ = QUICK if h.quick else FULL
    # The baseline waits for the whole backlog (half a minute at full size): one round says it all.
    rounds = [await _round(h, scope, url, fair) for _ in range(h.rounds if fair else 1)]
    between = median([float(n) for n, _ in rounds])
    return {
        "case": "two projects: B's job" if fair else "one project (baseline): the same job as A's",
        "backlog": backlog,
        "slots": slots,
        "between": between,
        "turnovers": None if between is None else between / slots,
        "wait_s": median([w for _, w in rounds]),
    }


async def run(h: Harness) -> Section:
    backlog, slots, call_s = QUICK if h.quick else FULL
    section = Section(
        "fair_share",
        f"12. Fair share: one job of project B behind {backlog:,} queued jobs of project A, one worker of "
        f"{slots} slots, {call_s:g} s a call",
        [
            Column("case", "case"),
            Column("backlog", "A queued", "{:d}"),
            Column("slots", "slots", "{:d}"),
            Column("between", "A started meanwhile", "{:.0f}"),
            Column("turnovers", "B's wait, slot turnovers", "{:.2f}"),
            Column("wait_s", "B's wait s", "{:.3f}"),
            Column("vs_baseline", "x baseline", "{:.5f}x"),
        ],
    )
    async with h.scope() as scope:
        url = await scope.stub(call_s)
        baseline = await _case(h, scope, url, fair=False)
        fair = await _case(h, scope, url, fair=True)
    base, got = baseline["turnovers"], fair["turnovers"]
    fair["vs_baseline"] = got / base if isinstance(got, float) and isinstance(base, float) and base else None
    section.rows += [baseline, fair]
    ok = isinstance(got, float) and got <= 1.0
    section.targets.append(f"B's job starts within one slot turnover (<= 1.00): {h.judge(ok)}")
    section.notes.append(
        "Turnovers: jobs of A started between B's submit and B's start (record start times), divided by the "
        "slots. Fair share needs `python -m jobs`: arq's own claims (`arq jobs.WorkerSettings`) take the "
        "queue in score order."
    )
    return section
