"""Connections to Redis, direct or through Sentinel, the same way for gateway, hub and workers."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from arq.connections import RedisSettings
from redis.asyncio import ConnectionPool
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from settings import Settings


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
