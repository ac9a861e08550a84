"""The operators' dashboard: a static page, and the one overview call it makes besides the jobs API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse

from contracts.operations import SERVICES, Operation
from service.deps import ApiKeyDep, RedisDep, SettingsDep
from service.live.hub import JobEventHub
from settings import DEFAULT_QUEUE
from store import keys
from store.stats import live_counts
from store.system_state import live_workers

router = APIRouter(tags=["dashboard"])
_STATIC = Path(__file__).resolve().parent.parent / "dashboard"
_ASSETS = {
    "app.js": "text/javascript", "style.css": "text/css", "favicon.png": "image/png",
}


@router.get("/dashboard", response_class=FileResponse, include_in_schema=False)
async def dashboard_page() -> FileResponse:
    """The dashboard page; it asks for the API key and keeps it in the browser session."""
    return FileResponse(_STATIC / "index.html", media_type="text/html")


@router.get("/dashboard/{asset}", response_class=FileResponse, include_in_schema=False)
async def dashboard_asset(asset: str) -> FileResponse:
    """The page's script and style sheet."""
    if asset not in _ASSETS:
        raise HTTPException(404, "no such asset")
    return FileResponse(_STATIC / asset, media_type=_ASSETS[asset])


@router.get("/favicon.ico", response_class=FileResponse, include_in_schema=False)
async def favicon() -> FileResponse:
    """The icon browsers ask for on every page (a PNG: every browser reads one at this name)."""
    return FileResponse(
        _STATIC / "favicon.png", media_type="image/png", headers={"Cache-Control": "public, max-age=86400"}
    )


# What a worker's heartbeat says that a key of one project is shown: not its counters, which count
# every project's jobs.
_WORKER_FIELDS = ("worker_id", "host", "pid", "queue", "started_at", "last_heartbeat")


@router.get("/dashboard-api/overview")
async def overview(request: Request, redis: RedisDep, settings: SettingsDep, caller: ApiKeyDep) -> dict[str, Any]:
    """Queues with recent depth history, live workers, and IFC service health.

    Queue depths and each worker's running count come from the jobs' records (``store.stats.live_counts``),
    the same source as the jobs table, not from the workers' heartbeats, which lag by an interval.
    A key that is not admin sees its own project's jobs only: its counts, no depth history (every
    project's), and of each worker only its name and how many of the project's jobs it runs.
    """
    workers = await live_workers(redis, settings.heartbeat_interval * 3)
    names = sorted({DEFAULT_QUEUE, *settings.queues.values(), *(str(w["queue"]) for w in workers)})
    if caller.admin:
        counts = await live_counts(redis, names)
    else:
        counts = await live_counts(redis, names, project=caller.project)
        workers = [{k: w[k] for k in _WORKER_FIELDS if k in w} for w in workers]
    depths: dict[str, dict[str, Any]] = counts["queues"]
    for w in workers:
        w["running"] = counts["workers"].get(str(w["worker_id"]), 0)
    async with redis.pipeline(transaction=False) as pipe:
        for queue in depths:
            pipe.lrange(keys.queue_history(queue), 0, -1)
        for service in SERVICES:
            pipe.get(keys.service_health(service))
        results = await pipe.execute()
    histories, checks = results[: len(depths)], results[len(depths):]
    queues = {
        q: {**depth, "history": [json.loads(s) for s in reversed(history)] if caller.admin else []}
        for (q, depth), history in zip(depths.items(), histories, strict=True)
    }
    services = {s: json.loads(raw) if raw else None for s, raw in zip(SERVICES, checks, strict=True)}
    hub = cast(JobEventHub, request.state.events)
    return {
        "queues": queues,
        "workers": sorted(workers, key=lambda w: str(w["worker_id"])),
        "services": services,
        "operations": [op.value for op in Operation],
        "live_status": hub.mode,
        # Who the page's key is: the jobs table shows each job's project to an admin key, and a read
        # key gets no cancel or requeue buttons.
        "caller": {"project": caller.project, "role": caller.role.value},
    }
