"""How big each scenario is: a full run (a few minutes on 2 cores) and ``--quick`` (seconds, for the smoke test)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    rounds: int
    # 1 I/O-bound throughput: ifcflow jobs per round; RQ jobs per round and process; the service's latency.
    service_latency: float
    throughput_ifcflow_jobs: int
    throughput_rq_jobs: int
    throughput_processes: tuple[int, ...]
    # 2 overhead: no-op jobs per round and concurrent submitters.
    overhead_jobs: int
    overhead_clients: int
    # 3 gateway: seconds of load per level, concurrent clients per level.
    gateway_seconds: float
    gateway_clients: tuple[int, ...]
    # 4 time to start: samples per round at each poll delay (None: the default), and the idle window.
    start_poll_delays: tuple[float | None, ...]
    start_samples_default: int
    start_samples_fast: int
    idle_window_s: float
    # 5 concurrency: jobs in flight at once, each this long.
    concurrency_jobs: int
    concurrency_job_s: float
    # 6 live latency: connected clients per level, events per round; polling clients and their events.
    ws_clients: tuple[int, ...]
    ws_events: int
    poll_clients: int
    poll_events: int
    # 7 many sockets: sockets on one gateway, events sent to all of them.
    many_sockets: int
    many_events: int
    # 8 fleet: worker processes per case, slots per worker, seconds per job, backlog in fleet capacities.
    fleet_workers: tuple[int, ...] = (1, 2, 4, 8)
    fleet_max_jobs: int = 10
    fleet_job_s: float = 2.0
    fleet_backlog: int = 4
    # Peers (bench.peers) in scenario 1: jobs per round for Celery threads and SAQ, and per prefork child.
    throughput_peer_jobs: int = 2000
    throughput_prefork_jobs: int = 12
    # Peers in scenarios 1 and 8 at the first process count only (--quick: each peer start costs seconds).
    peers_first_size_only: bool = False
    # 9 burst: jobs submitted at once to a service of this many slots, each call this long, by this
    # many workers of max_jobs each; then jobs left queued behind a service whose calls never end.
    burst_jobs: int = 200
    burst_slots: int = 2
    burst_job_s: float = 0.25
    burst_workers: int = 2
    burst_max_jobs: int = 20
    burst_idle_jobs: int = 100_000
    burst_idle_window_s: float = 10.0


FULL = Sizes(
    rounds=3,
    service_latency=0.2,
    throughput_ifcflow_jobs=2000,
    throughput_rq_jobs=12,
    throughput_processes=(1, 4),
    overhead_jobs=1000,
    overhead_clients=16,
    gateway_seconds=2.0,
    gateway_clients=(1, 16, 64),
    start_poll_delays=(None, 0.05, 0.02),
    start_samples_default=10,
    start_samples_fast=40,
    idle_window_s=4.0,
    concurrency_jobs=1000,
    concurrency_job_s=2.0,
    ws_clients=(1, 100, 1000),
    ws_events=20,
    poll_clients=10,
    poll_events=10,
    many_sockets=5000,
    many_events=5,
)

QUICK = Sizes(
    rounds=1,
    service_latency=0.05,
    throughput_ifcflow_jobs=20,
    throughput_rq_jobs=2,
    throughput_processes=(1, 2),
    overhead_jobs=20,
    overhead_clients=4,
    gateway_seconds=0.3,
    gateway_clients=(1, 4),
    start_poll_delays=(None, 0.05),
    start_samples_default=2,
    start_samples_fast=3,
    idle_window_s=0.5,
    concurrency_jobs=20,
    concurrency_job_s=0.2,
    ws_clients=(1, 5),
    ws_events=2,
    poll_clients=2,
    poll_events=1,
    many_sockets=20,
    many_events=2,
    fleet_workers=(1, 2),
    fleet_max_jobs=3,
    fleet_job_s=0.3,
    fleet_backlog=2,
    throughput_peer_jobs=20,
    throughput_prefork_jobs=2,
    peers_first_size_only=True,
    burst_jobs=20,
    burst_job_s=0.05,
    burst_idle_jobs=200,
    burst_idle_window_s=1.0,
)
