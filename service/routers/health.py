"""Health of the whole pipeline: Redis, workers, IFC services. Needs no key."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from contracts.operations import SERVICES
from service.deps import RedisDep, SettingsDep
from store import keys, redis_health, service_slots

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(request: Request, redis: RedisDep, settings: SettingsDep) -> JSONResponse:
    """200 healthy or degraded (no worker, a service down or unchecked, Redis refusing writes);
    503 when Redis is down."""
    try:
        async with asyncio.timeout(3):
            async with redis.pipeline(transaction=False) as pipe:
                pipe.ping()
                now = int(time.time() * 1000)
                pipe.zcount(keys.WORKERS, now - int(settings.heartbeat_interval * 3000), "+inf")
                for service in SERVICES:
                    pipe.get(keys.service_health(service))
                _, workers, *checks = await pipe.execute()
            memory = await redis_health.probe(redis)
            slots = await service_slots.in_use(redis, list(SERVICES))
            capacity = await service_slots.capacities(redis)
    except (RedisError, OSError, TimeoutError) as exc:
        body = {"status": "unhealthy", "redis": {"ok": False, "error": type(exc).__name__}}
        return JSONResponse(body, status_code=503)
    services: dict[str, Any] = {}
    for service, raw in zip(SERVICES, checks, strict=True):
        check = json.loads(raw) if raw else None
        services[service] = check or {"healthy": None, "error": "not checked yet (is a worker running?)"}
        services[service]["slots"] = {"capacity": capacity.get(service), "in_use": slots[service]}
    degraded = (workers == 0 or not memory.writable
                or any(s.get("healthy") is not True for s in services.values()))
    body = {
        "status": "degraded" if degraded else "healthy",
        "redis": memory.as_dict(),
        "workers": {"alive": workers},
        # "keyspace": pushed from Redis notifications; "polling": CONFIG was refused, status is polled.
        "live_status": request.state.events.mode,
        "services": services,
    }
    return JSONResponse(body)
