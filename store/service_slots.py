"""Service slots shared by the whole fleet: no service gets more concurrent calls than it has children.

Each IFC service says its capacity in ``/health``; the workers' health check writes it here (or
``IFCFLOW_SERVICE_SLOTS`` overrides it, for a service behind a load balancer with several replicas).
A job holds one slot of its service from its claim to the end of its try: the claim script
(``store/lua/claim.lua``) takes it for the jobs it claims and leaves a job whose service is full in the
queue, holding nothing, so the next claim after a slot frees starts it, in queue order. A job that
arq's own claims started takes its slot with ``acquire`` instead.

A slot frees itself: a holder whose try is over (arq's in-progress key is gone, however the try
ended, the worker's death included) is dropped the next time anyone counts.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from store import keys, scripts


async def publish_capacities(redis: Redis, capacities: dict[str, int]) -> None:
    """Write each service's slot count (0 or less: unknown, no limit)."""
    known = {service: n for service, n in capacities.items() if n > 0}
    unknown = [service for service, n in capacities.items() if n <= 0]
    async with redis.pipeline(transaction=False) as pipe:
        if known:
            pipe.hset(keys.SERVICE_CAPACITY, mapping=known)
        if unknown:
            pipe.hdel(keys.SERVICE_CAPACITY, *unknown)
        await pipe.execute()


async def capacities(redis: Redis) -> dict[str, int]:
    raw = await redis.hgetall(keys.SERVICE_CAPACITY)  # type: ignore[misc]
    return {k.decode(): int(v) for k, v in raw.items()}


async def acquire(redis: Redis, service: str, job_id: str) -> bool:
    """Take a slot of ``service`` for ``job_id``: False while all are taken (the caller waits)."""
    taken = await scripts.SLOT_ACQUIRE(
        redis, [keys.service_slots(service), keys.SERVICE_CAPACITY, keys.job_meta(job_id)],
        [service, job_id, int(time.time() * 1000), keys.ARQ_IN_PROGRESS],
    )
    return bool(taken)


async def in_use(redis: Redis, services: list[str]) -> dict[str, int]:
    """Slots held per service right now, counting only holders whose try still runs."""
    async with redis.pipeline(transaction=False) as pipe:
        for service in services:
            pipe.zrange(keys.service_slots(service), 0, -1)
        holders = await pipe.execute()
    flat = [(service, h.decode()) for service, hs in zip(services, holders, strict=True) for h in hs]
    if not flat:
        return {service: 0 for service in services}
    async with redis.pipeline(transaction=False) as pipe:
        for _, job_id in flat:
            pipe.exists(keys.ARQ_IN_PROGRESS + job_id)
        alive = await pipe.execute()
    counts = {service: 0 for service in services}
    for (service, _), running in zip(flat, alive, strict=True):
        counts[service] += int(bool(running))
    return counts
