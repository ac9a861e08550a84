"""Quotas per project: requests per second, waiting jobs and stored bytes, checked by the gateway.

Limits come from ``IFCFLOW_QUOTA_*`` (every project) and ``IFCFLOW_PROJECT_QUOTAS`` (one project's own),
0 meaning unlimited, the default: a check of a project without that limit returns at once, without a
Redis call. Going past one raises ``QuotaExceeded``, which the gateway answers with its status (429, or
507 for storage), ``Retry-After`` when waiting helps, and the message (service/app.py).

Running jobs (``in_flight``) are not checked here: past its limit a project's jobs wait in the queue
while the other projects' run (store/lua/claim.lua), so a submit is never refused for them.

The counts are shared by every gateway through Redis, and checked before the work they admit, not with
it: concurrent requests of one project can pass a limit together by at most their number.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from redis.asyncio import Redis

from access.grants import Caller
from access.scope import project_of_key, unwrap
from settings import Settings
from storage import Storage
from store import keys

log = structlog.get_logger("access.quotas")

# Seconds a client is told to wait before submitting again past the waiting-jobs limit: jobs leave the
# queue as workers free slots, typically many a second.
QUEUED_RETRY_AFTER = 5
# The field of the stored-bytes hash holding when the store was walked: no project is named so.
_WALKED_AT = ".walked_at"
_RATE_HINT = "(IFCFLOW_QUOTA_RPS / IFCFLOW_PROJECT_QUOTAS)"
_QUEUED_HINT = "(IFCFLOW_QUOTA_QUEUED / IFCFLOW_PROJECT_QUOTAS)"
_STORAGE_HINT = "(IFCFLOW_QUOTA_STORAGE_BYTES / IFCFLOW_PROJECT_QUOTAS)"
# Walks under way in the background; held here so they are not collected half-way.
_refreshing: set[asyncio.Task[Any]] = set()


class QuotaExceeded(Exception):
    """A project went past one of its limits: answered with ``status`` (429 or 507), ``Retry-After``
    when ``retry_after`` is set, and ``message``."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def size_text(n: float) -> str:
    """Bytes as people read them, in powers of 1000 (the units disks and buckets are sold in): ``49.9 GB``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 999.95 or unit == "TB":
            return f"{n:.1f}".rstrip("0").rstrip(".") + f" {unit}"
        n /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def _second() -> int:
    """The wall-clock second a request is counted in (a function: tests hold the clock still)."""
    return int(time.time())


async def check_rate(redis: Redis, settings: Settings, caller: Caller) -> None:
    """Count a request of the caller's project; 429 past its requests per second.

    A counter per project and wall-clock second, shared by every gateway (their clocks kept by NTP):
    one round trip per request, its INCR and EXPIRE in one transaction so no counter outlives its use."""
    limit = settings.quota_for(caller.project).rps
    if not limit:
        return
    key = keys.quota_rate(caller.project, _second())
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, 2)
        count, _ = await pipe.execute()
    if int(count) > limit:
        raise QuotaExceeded(429, f"project {caller.project} is limited to {limit} requests per second {_RATE_HINT}",
                            retry_after=1)


async def waiting_jobs(redis: Redis, settings: Settings, project: str) -> int:
    """The project's waiting jobs (queued and deferred, not running), over every queue."""
    queues = settings.all_queues()
    async with redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.zcard(keys.fair_index(queue, project))
        counts = await pipe.execute()
    return sum(int(n) for n in counts)


async def check_submit(redis: Redis, settings: Settings, caller: Caller, jobs: int = 1) -> None:
    """Whether ``jobs`` more jobs of the caller's project may wait; 429 past its waiting-jobs limit."""
    limit = settings.quota_for(caller.project).queued
    if not limit:
        return
    waiting = await waiting_jobs(redis, settings, caller.project)
    if waiting + jobs <= limit:
        return
    project = caller.project
    if jobs > limit:  # waiting would never let this one in
        raise QuotaExceeded(429, f"project {project} may have at most {limit} waiting jobs {_QUEUED_HINT}: "
                                 f"this submit alone makes {jobs}; submit them in smaller parts")
    raise QuotaExceeded(
        429, f"project {project} may have at most {limit} waiting jobs {_QUEUED_HINT}: {waiting} are waiting"
             + (f", this submit makes {jobs} more" if jobs > 1 else "") + "; try again when some have started",
        retry_after=QUEUED_RETRY_AFTER,
    )


async def check_storage(redis: Redis, settings: Settings, storage: Storage, caller: Caller, incoming: int) -> None:
    """Whether ``incoming`` more bytes fit the caller's project's storage quota; 507 when not.

    Admitted bytes are added to the project's figure at once, so uploads between two walks of the store
    count; the next walk puts the figure right (bytes of an upload that failed, versions removed)."""
    project = caller.project
    limit = settings.quota_for(project).storage_bytes
    if not limit:
        return
    stored = await stored_bytes(redis, settings, storage, project)
    if stored + incoming > limit:
        state = "is used" if stored >= limit else "is too small for this upload"
        raise QuotaExceeded(
            507, f"project {project}'s storage quota of {size_text(limit)} {state}: {size_text(stored)} stored, "
                 f"this upload is {size_text(incoming)} {_STORAGE_HINT}",
        )
    if incoming:
        await redis.hincrby(keys.QUOTA_STORAGE, project, incoming)  # type: ignore[misc]


async def stored_bytes(redis: Redis, settings: Settings, storage: Storage, project: str) -> int:
    """The bytes of every version under the project's folder (``storage`` may be any view of the store).

    From the last walk of the store, cached in Redis for every project at once: when it is older than
    ``IFCFLOW_QUOTA_STORAGE_REFRESH`` one gateway walks again in the background (the others, and this
    request, go on with the figure they have); only with no figure at all does a request wait for a walk."""
    walked_at, figure = await redis.hmget(keys.QUOTA_STORAGE, [_WALKED_AT, project])  # type: ignore[misc]
    if walked_at is None:
        return (await walk_store(redis, settings, storage)).get(project, 0)
    if time.time() - float(walked_at) >= settings.quota_storage_refresh and await _take_walk(redis, settings):
        task = asyncio.create_task(_walk_in_background(redis, settings, storage))
        _refreshing.add(task)
        task.add_done_callback(_refreshing.discard)
    return int(figure or 0)


async def _take_walk(redis: Redis, settings: Settings) -> bool:
    # One walker for all gateways; the lock expires on its own if its gateway dies half-way.
    ttl = int(max(60.0, settings.quota_storage_refresh))
    return bool(await redis.set(keys.QUOTA_STORAGE_WALK, "1", nx=True, ex=ttl))


async def _walk_in_background(redis: Redis, settings: Settings, storage: Storage) -> None:
    try:
        await walk_store(redis, settings, storage)
    except Exception as exc:  # the store or Redis away: the old figure stays until the next try
        log.warning("quota.storage_walk_failed", error=repr(exc))
        await redis.delete(keys.QUOTA_STORAGE_WALK)


async def walk_store(redis: Redis, settings: Settings, storage: Storage) -> dict[str, int]:
    """Count every project's stored bytes (every version) and cache them: ``{project: bytes}``."""
    started = time.monotonic()
    totals: dict[str, int] = {}
    async for found in unwrap(storage).all_versions():
        project = project_of_key(found.key)
        totals[project] = totals.get(project, 0) + found.size
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.QUOTA_STORAGE)
        pipe.hset(keys.QUOTA_STORAGE, mapping={**totals, _WALKED_AT: repr(time.time())})
        # Gone when no gateway read it for a while: the next check walks again.
        pipe.expire(keys.QUOTA_STORAGE, int(settings.quota_storage_refresh * 2) + 60)
        pipe.delete(keys.QUOTA_STORAGE_WALK)
        await pipe.execute()
    log.info("quota.storage_walked", projects=len(totals), seconds=round(time.monotonic() - started, 3))
    return totals


async def stop_walks() -> None:
    """Cancel the walks under way (the gateway stops: its store is about to close under them)."""
    tasks = list(_refreshing)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
