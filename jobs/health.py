"""Liveness, both ways: the cron check of every IFC service, and this worker's own heartbeat."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from typing import Any

import aiohttp
import structlog

from contracts.operations import SERVICES
from jobs.context import WorkerContext
from jobs.queue_sampler import sample_queues
from settings import Settings
from store import job_store, keys, service_slots

log = structlog.get_logger("jobs.health")
_CHECK_TIMEOUT = aiohttp.ClientTimeout(total=5)


async def _check_one(session: aiohttp.ClientSession, service: str, url: str) -> dict[str, Any]:
    started = time.perf_counter()
    error: str | None = None
    capacity: int | None = None
    try:
        async with session.get(f"{url}/health", timeout=_CHECK_TIMEOUT) as resp:
            if resp.status != 200:
                error = f"HTTP {resp.status}"
            else:
                body = await resp.json(content_type=None)
                found = body.get("capacity") if isinstance(body, dict) else None
                capacity = found if isinstance(found, int) and found > 0 else None
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}".rstrip(": ")
    return {
        "service": service,
        "healthy": error is None,
        "error": error,
        "capacity": capacity,
        "checked_at": int(time.time() * 1000),
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def fleet_capacities(settings: Settings, results: list[dict[str, Any]]) -> dict[str, int]:
    """Slots per service for the fleet: the setting where given, else what the service said; a service
    that did not answer keeps its last known count."""
    found = {r["service"]: r["capacity"] for r in results if r["capacity"]}
    return {**found, **{s: n for s, n in settings.service_slots.items() if s in SERVICES}}


async def check_services(ctx: WorkerContext) -> dict[str, bool]:
    """Cron job: call every service's ``/health`` at once and store each answer with a TTL, and
    each service's capacity for the fleet's slots (``store/service_slots.py``)."""
    settings, redis = ctx["settings"], ctx["redis"]
    results = await asyncio.gather(
        *(_check_one(ctx["http"], s, settings.service_url(s)) for s in SERVICES)
    )
    # Two periods: one missed check is tolerated, a stopped checker turns into "unknown".
    ttl = settings.health_check_period * 2 + 5
    async with redis.pipeline(transaction=False) as pipe:
        for r in results:
            pipe.set(keys.service_health(r["service"]), json.dumps(r), ex=ttl)
        await pipe.execute()
    await service_slots.publish_capacities(redis, fleet_capacities(settings, results))
    for r in results:
        if not r["healthy"]:
            log.warning("service.unhealthy", service=r["service"], error=r["error"])
    return {r["service"]: r["healthy"] for r in results}


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


async def beat_once(ctx: WorkerContext) -> None:
    settings, redis, worker_id = ctx["settings"], ctx["redis"], ctx["worker_id"]
    now = int(time.time() * 1000)
    ttl_ms = int(settings.heartbeat_interval * 3 * 1000)
    info = {
        "worker_id": worker_id,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "queue": settings.queue_name,
        "started_at": int(ctx["started_at"] * 1000),
        "last_heartbeat": now,
        **ctx["counters"],
    }
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zadd(keys.WORKERS, {worker_id: now})
        pipe.set(keys.worker(worker_id), json.dumps(info), px=ttl_ms)
        await pipe.execute()
    if time.time() * 1000 - now > settings.heartbeat_interval * 1000:
        ctx.pop("connected_since", None)  # Redis was away: every worker's beats are late, not just theirs
    connected_since = ctx.setdefault("connected_since", time.time())
    # Workers that died without saying goodbye: their jobs go back to the queue, they leave the set.
    # Only a worker that has itself reached Redis for the whole window can tell who stayed silent in
    # it: after a Redis outage (or its own start) it first lets the others beat again.
    if time.time() - connected_since >= settings.worker_dead_after:
        handed_back = await job_store.reap_dead_workers(redis, settings, settings.worker_dead_after, worker_id)
        if handed_back:
            log.warning("worker.dead_jobs_handed_back", job_ids=handed_back)
    await sample_queues(ctx)


async def heartbeat_loop(ctx: WorkerContext) -> None:
    """Refresh this worker's heartbeat until cancelled; a Redis outage only skips beats."""
    while True:
        try:
            await beat_once(ctx)
        except Exception as exc:  # a lost beat must never stop the worker
            ctx.pop("connected_since", None)
            log.warning("worker.heartbeat_failed", error=str(exc))
        await asyncio.sleep(ctx["settings"].heartbeat_interval)


async def say_goodbye(ctx: WorkerContext) -> None:
    async with ctx["redis"].pipeline(transaction=False) as pipe:
        pipe.zrem(keys.WORKERS, ctx["worker_id"])
        pipe.delete(keys.worker(ctx["worker_id"]))
        await pipe.execute()
