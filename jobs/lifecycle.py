"""The worker's hooks: clients made in ``on_startup``, closed in ``on_shutdown``."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Any, cast

import aiohttp
import orjson
import structlog

from jobs import channels
from jobs.context import WorkerContext
from jobs.health import fleet_capacities, heartbeat_loop, new_worker_id, say_goodbye
from settings import get_settings
from settings.logging import configure_logging
from settings.process import freeze_startup_objects
from storage import open_storage
from store import service_slots
from store.redis_client import eviction_policy, eviction_problem

log = structlog.get_logger("jobs.worker")


def _json_text(value: object) -> str:
    return orjson.dumps(value).decode()


async def startup(raw_ctx: dict[str, Any]) -> None:
    ctx = cast(WorkerContext, raw_ctx)
    settings = get_settings()
    # arq's CLI configured stdlib logging after importing us; take it over now.
    configure_logging(settings.log_level, settings.log_json)
    problem = eviction_problem(await eviction_policy(ctx["redis"]), settings)
    if problem:
        print(problem, file=sys.stderr)
        raise SystemExit(2)
    ctx["settings"] = settings
    # Slot counts set by hand hold from the first claim on; the services' own come with the first check.
    await service_slots.publish_capacities(ctx["redis"], fleet_capacities(settings, []))
    # One session for every job of this process; no per-host cap, the job count is the cap.
    # orjson for request bodies: the stdlib encoder was a tenth of a small job's CPU.
    ctx["http"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                                        json_serialize=_json_text)
    storage = open_storage(settings)
    await storage.start()
    ctx["storage"] = storage
    ctx["worker_id"] = new_worker_id()
    ctx["started_at"] = time.time()
    ctx["counters"] = {"running": 0, "complete": 0, "failed": 0, "retried": 0}
    ctx["abortable"], ctx["aborted"] = {}, set()
    ctx["heartbeat"] = asyncio.create_task(heartbeat_loop(ctx))
    ctx["listener"] = asyncio.create_task(channels.listen(ctx))
    freeze_startup_objects()
    log.info("worker.started", worker_id=ctx["worker_id"], queue=settings.queue_name, max_jobs=settings.max_jobs)


async def shutdown(raw_ctx: dict[str, Any]) -> None:
    ctx = cast(WorkerContext, raw_ctx)
    for name in ("heartbeat", "listener"):
        task = ctx.get(name)
        if isinstance(task, asyncio.Task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    with contextlib.suppress(Exception):
        await say_goodbye(ctx)
    if "http" in ctx:
        await ctx["http"].close()
    if "storage" in ctx:
        with contextlib.suppress(Exception):
            await ctx["storage"].close()
    log.info("worker.stopped", worker_id=ctx.get("worker_id"))
