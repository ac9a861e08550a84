"""Prometheus metrics: the whole system's, read from Redis at scrape time, plus this gateway's own."""

from __future__ import annotations

import json
from collections.abc import Iterable

from arq import ArqRedis
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from contracts.operations import SERVICES, Operation
from settings import DEFAULT_QUEUE, Settings
from store import keys, redis_health, service_slots, stats
from store.system_state import live_workers, queue_depths
from workflows.schedules import SKIPPED_STAT

# This process's request latencies; every other series comes from Redis, shared by all processes.
GATEWAY_REGISTRY = CollectorRegistry(auto_describe=True)
REQUEST_LATENCY = Histogram(
    "ifcflow_http_request_duration_seconds",
    "Gateway request latency by route",
    ["method", "route", "status"],
    registry=GATEWAY_REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class _Snapshot(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)


async def system_metrics(redis: ArqRedis, settings: Settings, project: str | None = None) -> list[Metric]:
    """Queue depths, workers, service health, job counters and histograms, as of now; the per-project
    series of every project, or of ``project`` alone (what a key that is not admin may see)."""
    workers = await live_workers(redis, settings.heartbeat_interval * 3)
    queues = {DEFAULT_QUEUE, *settings.queues.values()}
    depths = await queue_depths(redis, queues, workers)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.STATS_COUNTS)
        for service in SERVICES:
            pipe.get(keys.service_health(service))
        for op in Operation:
            pipe.hgetall(keys.stats_histogram("duration", op.value))
            pipe.hgetall(keys.stats_histogram("queue_wait", op.value))
        counts, *rest = await pipe.execute()
    health_raw, hist_raw = rest[: len(SERVICES)], rest[len(SERVICES):]

    depth = GaugeMetricFamily("ifcflow_queue_jobs", "Jobs per queue and state", labels=["queue", "state"])
    for queue, by_state in depths.items():
        for state, n in by_state.items():
            depth.add_metric([queue, state], n)
    live = GaugeMetricFamily("ifcflow_workers_live", "Workers with a fresh heartbeat", labels=["queue"])
    for queue in depths:
        live.add_metric([queue], sum(1 for w in workers if w["queue"] == queue))
    in_flight = GaugeMetricFamily("ifcflow_jobs_in_flight", "Jobs running on all workers")
    in_flight.add_metric([], sum(int(w.get("running", 0)) for w in workers))
    up = GaugeMetricFamily("ifcflow_service_up", "IFC service health from the last check (1 healthy)",
                           labels=["service"])
    for service, raw in zip(SERVICES, health_raw, strict=True):
        up.add_metric([service], 1.0 if raw and json.loads(raw).get("healthy") else 0.0)

    jobs = CounterMetricFamily("ifcflow_jobs", "Jobs by operation and outcome", labels=["operation", "outcome"])
    decoded = {k.decode(): float(v) for k, v in counts.items()}
    for op in Operation:
        for outcome in stats.OUTCOMES:
            jobs.add_metric([op.value, outcome], decoded.get(f"{op.value}:{outcome}", 0.0))
    skipped = CounterMetricFamily("ifcflow_schedule_slots_skipped", "Schedule slots never fired (no worker checked)")
    skipped.add_metric([], decoded.get(SKIPPED_STAT, 0.0))

    duration = HistogramMetricFamily("ifcflow_job_duration_seconds", "Run time of a try", labels=["operation"])
    wait = HistogramMetricFamily("ifcflow_job_queue_wait_seconds", "Due to started", labels=["operation"])
    for i, op in enumerate(Operation):
        for family, raw in ((duration, hist_raw[2 * i]), (wait, hist_raw[2 * i + 1])):
            buckets, total = stats.cumulative_buckets({k.decode(): v.decode() for k, v in raw.items()})
            family.add_metric([op.value], buckets, total)
    return [depth, live, in_flight, up, jobs, skipped, duration, wait, *await _capacity_metrics(redis),
            *await _project_metrics(redis, settings, project)]


async def _project_metrics(redis: ArqRedis, settings: Settings, only: str | None) -> list[Metric]:
    """Waiting jobs per project and queue (the fair-share indexes) and jobs per project and outcome."""
    queues = settings.all_queues()
    async with redis.pipeline(transaction=False) as pipe:
        if only is None:
            pipe.hgetall(keys.STATS_PROJECT_COUNTS)
            for queue in queues:
                pipe.smembers(keys.fair_projects(queue))
        else:
            pipe.hmget(keys.STATS_PROJECT_COUNTS, [f"{only}:{outcome}" for outcome in stats.OUTCOMES])
        counts_raw, *members = await pipe.execute()
    if only is None:
        counts = {k.decode(): float(v) for k, v in counts_raw.items()}
        projects = sorted({f.rpartition(":")[0] for f in counts} | {m.decode() for ms in members for m in ms})
    else:
        counts = {f"{only}:{o}": float(v) for o, v in zip(stats.OUTCOMES, counts_raw, strict=True) if v is not None}
        projects = [only]
    async with redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            for project in projects:
                pipe.zcard(keys.fair_index(queue, project))
        waiting_raw = iter(await pipe.execute())
    waiting = GaugeMetricFamily("ifcflow_project_jobs_waiting", "Jobs waiting (queued or deferred) per project",
                                labels=["project", "queue"])
    for queue in queues:
        for project in projects:
            waiting.add_metric([project, queue], float(next(waiting_raw)))
    jobs = CounterMetricFamily("ifcflow_project_jobs", "Jobs per project and outcome", labels=["project", "outcome"])
    for project in projects:
        for outcome in stats.OUTCOMES:
            jobs.add_metric([project, outcome], counts.get(f"{project}:{outcome}", 0.0))
    return [waiting, jobs]


async def _capacity_metrics(redis: ArqRedis) -> list[Metric]:
    """Slots per service and those in use; Redis memory, writability and evictions."""
    capacity = await service_slots.capacities(redis)
    in_use = await service_slots.in_use(redis, list(SERVICES))
    slots = GaugeMetricFamily("ifcflow_service_slots", "Slots of each IFC service for the fleet (0: unknown)",
                              labels=["service"])
    used = GaugeMetricFamily("ifcflow_service_slots_in_use", "Slots held by running jobs", labels=["service"])
    for service in SERVICES:
        slots.add_metric([service], capacity.get(service, 0))
        used.add_metric([service], in_use[service])
    health = await redis_health.probe(redis)
    writable = GaugeMetricFamily("ifcflow_redis_writable", "1 while Redis takes writes (a probe at scrape time)")
    writable.add_metric([], 1.0 if health.writable else 0.0)
    memory = GaugeMetricFamily("ifcflow_redis_memory_used_bytes", "Redis used_memory")
    memory.add_metric([], health.used_memory)
    limit = GaugeMetricFamily("ifcflow_redis_memory_max_bytes", "Redis maxmemory (0: no limit)")
    limit.add_metric([], health.maxmemory)
    evicted = CounterMetricFamily("ifcflow_redis_evicted_keys", "Keys Redis evicted since it started")
    evicted.add_metric([], health.evicted_keys)
    policy = GaugeMetricFamily("ifcflow_redis_maxmemory_policy", "Redis maxmemory-policy (the label; always 1)",
                               labels=["policy"])
    policy.add_metric([health.maxmemory_policy], 1.0)
    return [slots, used, writable, memory, limit, evicted, policy]


async def exposition(redis: ArqRedis, settings: Settings, project: str | None = None) -> bytes:
    """The text format for one scrape (per-project series of ``project`` alone when given)."""
    snapshot = CollectorRegistry(auto_describe=False)
    snapshot.register(_Snapshot(await system_metrics(redis, settings, project)))
    return generate_latest(snapshot) + generate_latest(GATEWAY_REGISTRY)


def route_label(path_template: str | None) -> str:
    return path_template or "unmatched"


