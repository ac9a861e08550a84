"""One timed round of a peer, as scenarios time ifcflow's: from the first enqueue to the last job's end."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.cpu import cpu_seconds
from bench.jobs import new_ids
from bench.peers.done import DoneWatcher
from bench.peers.drivers import Peer, select
from bench.stats import ratio

if TYPE_CHECKING:
    from bench.harness import Harness


@dataclass
class Round:
    seconds: float  # first enqueue to the last job's end
    submit_seconds: float  # first enqueue to the last enqueue's return
    cmds_job: float  # Redis commands per job: enqueueing, the workers' own, not the bench's wait
    cpu_ms_job: float | None = None  # CPU of the worker processes (and their children) per job

    def rate(self, jobs: int) -> float:
        return jobs / self.seconds


async def timed_round(
    h: Harness, peer: Peer, watcher: DoneWatcher, service_url: str, jobs: int, concurrency: int = 32,
    within: float = 120.0, pids: list[int] | None = None,
) -> Round:
    """``pids``: the worker processes whose CPU time the round's jobs are charged with."""
    ids = new_ids(jobs)
    watcher.expect(set(ids))
    cpu = cpu_seconds(pids or [])
    commands = await h.commands_processed()
    start = time.perf_counter()
    await peer.enqueue(h, service_url, ids, concurrency)
    submitted = time.perf_counter()
    last = await watcher.wait(within=within)
    commands = await h.commands_processed() - commands - 1  # the INFO that reads the total
    cpu_ms = (cpu_seconds(pids) - cpu) * 1000 / jobs if pids else None
    return Round(last - start, submitted - start, commands / jobs, cpu_ms)


def peers_of(h: Harness) -> tuple[list[Peer], list[str]]:
    """The run's peers that are installed, and a note for each that is not."""
    return select(h.peers)


def ahead(ifcflow_per_process: float | None, peer_per_process: float | None) -> float | None:
    """How many times ifcflow's jobs/s per worker process is the peer's (> 1: ifcflow is ahead)."""
    return ratio(ifcflow_per_process, peer_per_process)
