"""The SAQ baseline's worker settings and its one job: ``python -m saq bench.peers.saq_app.settings``.

The job posts the same JSON body to the same stand-in service URL as ifcflow's ``ifcconvert`` job,
through one pooled aiohttp session per worker process, as ifcflow's worker does. ``BENCH_REDIS_URL``
and ``BENCH_SAQ_CONCURRENCY`` (the jobs in flight per process, ifcflow's ``max_jobs``) come from the
harness.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp
from saq import Queue

QUEUE = "bench-saq"
FUNCTION = "call_service"
READY_KEY = "bench:saq:ready"  # a set of worker pids, added to once each worker has started


async def call_service(ctx: dict[str, Any], *, url: str, body: dict[str, Any]) -> dict[str, Any]:
    session: aiohttp.ClientSession = ctx["http"]
    async with session.post(url, json=body) as resp:
        resp.raise_for_status()
        result: dict[str, Any] = await resp.json(content_type=None)
        return result


async def _startup(ctx: dict[str, Any]) -> None:
    ctx["http"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    await ctx["worker"].queue.redis.sadd(READY_KEY, str(os.getpid()))


async def _shutdown(ctx: dict[str, Any]) -> None:
    await ctx["http"].close()


def settings() -> dict[str, Any]:
    """Read by ``saq`` at start (a callable, so the environment is read in the worker, not at import)."""
    url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1/0")  # no default Redis: port 1 refuses
    return {
        "queue": Queue.from_url(url, name=QUEUE),
        "functions": [(FUNCTION, call_service)],
        "concurrency": int(os.environ.get("BENCH_SAQ_CONCURRENCY", "10")),
        "startup": _startup,
        "shutdown": _shutdown,
    }
