"""Connections to Redis, direct or through Sentinel, the same way for gateway, hub and workers."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis as sync_redis
import structlog
from arq.connections import RedisSettings
from redis.asyncio import ConnectionPool
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import RedisError

from settings import Settings

EVICTION_REFUSED = (
    "ifcflow: Redis has maxmemory-policy {policy}: it would evict job records and queue entries "
    "silently. Set maxmemory-policy noeviction on the server, or IFCFLOW_REDIS_ALLOW_EVICTION=true to run anyway"
)


def eviction_problem(policy: str | None, settings: Settings) -> str | None:
    """The line to stop with when ``policy`` lets Redis evict keys (None: fine, or allowed, or unknown)."""
    if policy in (None, "", "noeviction"):
        return None
    if settings.redis_allow_eviction:
        structlog.get_logger("ifcflow").warning(
            "redis.evicting", maxmemory_policy=policy,
            hint="IFCFLOW_REDIS_ALLOW_EVICTION is set: jobs may vanish when Redis fills up")
        return None
    return EVICTION_REFUSED.format(policy=policy)


async def eviction_policy(redis: Any) -> str | None:
    """Redis's ``maxmemory-policy``; None when it cannot be read (a managed Redis refusing CONFIG)."""
    try:
        found = await redis.config_get("maxmemory-policy")
    except (RedisError, OSError):
        return None
    value = found.get("maxmemory-policy") or found.get(b"maxmemory-policy")
    return value.decode() if isinstance(value, bytes) else value


def sentinel_hosts(settings: Settings) -> list[tuple[str, int]]:
    hosts = []
    for entry in settings.redis_sentinels:
        host, _, port = entry.rpartition(":") if ":" in entry else (entry, "", "26379")
        hosts.append((host, int(port)))
    return hosts


def connection_pool(settings: Settings, **options: Any) -> ConnectionPool:
    """A pool to the Redis master: ``IFCFLOW_REDIS_URL``, or the master Sentinel names when
    ``IFCFLOW_REDIS_SENTINELS`` is set (the URL then gives password and database only)."""
    if not settings.redis_sentinels:
        return ConnectionPool.from_url(settings.redis_url, **options)
    url = urlsplit(settings.redis_url)
    db = int(url.path.strip("/") or 0)
    sentinel = Sentinel(sentinel_hosts(settings), socket_connect_timeout=options.get("socket_connect_timeout", 2))
    return SentinelConnectionPool(
        settings.redis_sentinel_master, sentinel, db=db, password=url.password, username=url.username, **options
    )


def arq_redis_settings(settings: Settings) -> RedisSettings:
    """arq's connection settings for a worker, Sentinel included."""
    redis_settings = RedisSettings.from_dsn(settings.redis_url)
    if settings.redis_sentinels:
        redis_settings.host = sentinel_hosts(settings)
        redis_settings.sentinel = True
        redis_settings.sentinel_master = settings.redis_sentinel_master
    return redis_settings


def eviction_policy_now(settings: Settings) -> str | None:
    """``eviction_policy`` read once, synchronously, before a process starts serving."""
    try:
        if settings.redis_sentinels:
            url = urlsplit(settings.redis_url)
            sentinel = sync_redis.Sentinel(sentinel_hosts(settings), socket_timeout=2)
            client = sentinel.master_for(settings.redis_sentinel_master, password=url.password, socket_timeout=2)
        else:
            client = sync_redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
        with client:
            found = client.config_get("maxmemory-policy")
    except (RedisError, OSError):
        return None  # Redis away (the process starts and answers 503 meanwhile) or CONFIG refused
    value = found.get("maxmemory-policy") if isinstance(found, dict) else None
    return value.decode() if isinstance(value, bytes) else value
