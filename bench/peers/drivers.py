"""The bench's side of each peer: start its workers on the run's Redis, enqueue the job, see it end.

A peer's worker processes are started through the scenario's ``Scope`` (so they are stopped with it,
and log where every other process of the run logs). ``slots`` is the jobs in flight per worker
process where the pool allows it: SAQ's ``concurrency`` and Celery's threads run that many per
process; Celery's prefork pool runs one job per child process, so a prefork worker of ``slots`` is
``slots`` children (plus the parent, which takes messages from the broker and hands them out).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from bench.jobs import CONVERT
from bench.peers.done import DoneWatcher
from bench.procs import Proc, python_args, wait_until
from bench.rss import children, peak_rss_mb
from contracts.operations import Operation
from contracts.requests import REQUEST_MODELS

if TYPE_CHECKING:
    from bench.harness import Harness, Scope

QUEUE = "bench-celery"  # the prefix of the Celery pools' queues

# The body ifcflow's worker posts for the bench's ifcconvert job (the request with its defaults filled).
BODY = REQUEST_MODELS[Operation.ifcconvert].model_validate(CONVERT).model_dump(mode="json", by_alias=True)


@dataclass
class Fleet:
    """A peer's running workers: their processes, and the ones jobs run in (prefork: the children)."""

    procs: list[Proc]
    job_processes: int

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def peak_rss_mb(self) -> float:
        """The largest VmHWM of one worker process (prefork: of a parent)."""
        return max((peak_rss_mb(p.pid) or 0.0) for p in self.procs)

    def child_rss_mb(self) -> float | None:
        """The largest VmHWM of one child process (prefork's pool), None without children."""
        pids = [c for p in self.procs for c in children(p.pid)]
        return max((peak_rss_mb(pid) or 0.0) for pid in pids) if pids else None


class Peer:
    key = ""
    label = ""
    module = ""  # what must be importable
    one_job_per_process = False  # prefork: a child process per job in flight

    def available(self) -> bool:
        try:
            return importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):  # a broken or half-removed installation counts as absent
            return False

    def processes(self, workers: int, slots: int) -> int:
        """Processes that run jobs for ``workers`` workers of ``slots`` each."""
        return workers

    async def start(self, scope: Scope, workers: int, slots: int) -> Fleet:
        raise NotImplementedError

    def watcher(self, h: Harness) -> DoneWatcher:
        raise NotImplementedError

    async def enqueue(self, h: Harness, service_url: str, ids: list[str], concurrency: int = 32) -> None:
        raise NotImplementedError


class CeleryPeer(Peer):
    module = "celery"

    def __init__(self, pool: str) -> None:
        self.pool = pool
        self.key = f"celery-{pool}"
        self.label = f"Celery ({pool} pool)"
        self.queue = f"{QUEUE}-{pool}"  # one queue per pool: both pools' workers may run at once
        self.one_job_per_process = pool == "prefork"

    def processes(self, workers: int, slots: int) -> int:
        return workers * slots if self.one_job_per_process else workers

    async def start(self, scope: Scope, workers: int, slots: int) -> Fleet:
        from bench.peers.celery_app import READY_KEY

        redis = scope.h.redis
        before = int(await redis.scard(READY_KEY))
        procs = []
        for i in range(workers):
            args = python_args(
                "-m", "celery", "-A", "bench.peers.celery_app", "worker", "--pool", self.pool,
                "--concurrency", str(slots), "-Q", self.queue, "-n", f"bench-{self.pool}-{time.time_ns()}-{i}@%h",
                # Cluster chatter nobody listens to here (ifcflow has none of it either).
                "--without-mingle", "--without-gossip", "--without-heartbeat",
            )
            procs.append(scope.start(f"celery-{self.pool}-worker", args, {"BENCH_REDIS_URL": scope.h.redis_url}))

        async def ready() -> bool:
            return int(await redis.scard(READY_KEY)) >= before + workers

        await wait_until(ready, f"{workers} celery {self.pool} worker(s)", within=60, procs=tuple(procs))
        return Fleet(procs, self.processes(workers, slots))

    def watcher(self, h: Harness) -> DoneWatcher:
        cut = len("celery-task-meta-")

        def parse(channel: bytes, data: bytes) -> tuple[str, bool] | None:
            status = json.loads(data).get("status")
            if status not in ("SUCCESS", "FAILURE"):
                return None  # STARTED, RETRY: not an end
            return channel[cut:].decode(), status == "SUCCESS"

        return DoneWatcher(h.redis_url, "celery-task-meta-*", parse)

    async def enqueue(self, h: Harness, service_url: str, ids: list[str], concurrency: int = 32) -> None:
        from bench.peers.celery_app import TASK, make_app

        app = make_app(h.redis_url, results=False)
        url = f"{service_url}/ifcconvert"

        def send(task_id: str) -> None:
            app.send_task(TASK, args=(url, BODY), task_id=task_id, queue=self.queue)

        def send_all() -> None:
            # Celery's client is synchronous: ``concurrency`` threads, as that many clients would send.
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(send, ids))

        try:
            await asyncio.to_thread(send_all)
        finally:
            app.close()


class SaqPeer(Peer):
    key = "saq"
    label = "SAQ"
    module = "saq"

    async def start(self, scope: Scope, workers: int, slots: int) -> Fleet:
        from bench.peers.saq_app import READY_KEY

        redis = scope.h.redis
        before = int(await redis.scard(READY_KEY))
        blocked = await _blocked_clients(redis)
        env = {"BENCH_REDIS_URL": scope.h.redis_url, "BENCH_SAQ_CONCURRENCY": str(slots)}
        args = python_args("-m", "saq", "bench.peers.saq_app.settings")
        procs = [scope.start("saq-worker", args, env) for _ in range(workers)]

        async def ready() -> bool:
            # Each of a worker's slots is a task blocked on its own connection in BLMOVE; opening a
            # thousand of them takes seconds after start-up, so a worker is ready once all are blocked.
            if int(await redis.scard(READY_KEY)) < before + workers:
                return False
            return await _blocked_clients(redis) >= blocked + workers * slots

        await wait_until(ready, f"{workers} saq worker(s)", within=60, procs=tuple(procs))
        return Fleet(procs, workers)

    def watcher(self, h: Harness) -> DoneWatcher:
        from bench.peers.saq_app import QUEUE

        prefix = f"saq:job:{QUEUE}:"
        cut = len(prefix)

        def parse(channel: bytes, data: bytes) -> tuple[str, bool] | None:
            if data in (b"complete", b"failed", b"aborted"):
                return channel[cut:].decode(), data == b"complete"
            return None  # queued, active: not an end

        return DoneWatcher(h.redis_url, prefix + "*", parse)

    async def enqueue(self, h: Harness, service_url: str, ids: list[str], concurrency: int = 32) -> None:
        from saq import Queue

        from bench.peers.saq_app import FUNCTION, QUEUE

        queue = Queue.from_url(h.redis_url, name=QUEUE, max_concurrent_ops=concurrency)
        url = f"{service_url}/ifcconvert"
        gate = asyncio.Semaphore(concurrency)

        async def one(job_id: str) -> None:
            async with gate:
                await queue.enqueue(FUNCTION, key=job_id, timeout=60, url=url, body=BODY)

        try:
            await asyncio.gather(*(one(i) for i in ids))
        finally:
            await queue.disconnect()


async def _blocked_clients(redis: Redis) -> int:
    return int((await redis.info("clients"))["blocked_clients"])


ALL: tuple[Peer, ...] = (CeleryPeer("prefork"), CeleryPeer("threads"), SaqPeer())
KEYS: tuple[str, ...] = tuple(p.key for p in ALL)


def select(keys: Iterable[str], peers: Iterable[Peer] = ALL) -> tuple[list[Peer], list[str]]:
    """The chosen peers that can run here, and a note for each one that cannot."""
    wanted = set(keys)
    chosen = [p for p in peers if p.key in wanted]
    return [p for p in chosen if p.available()], [
        f"{p.label}: not installed ({p.module}), not measured" for p in chosen if not p.available()
    ]
