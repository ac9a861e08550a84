"""The gateway's clients, made at start and closed at stop, never per request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

import structlog
from arq import ArqRedis
from fastapi import FastAPI

from access.keyring import KeyRing
from access.quotas import stop_walks
from contracts.operations import SERVICES
from service.batching import CreateBatcher
from service.live.hub import JobEventHub
from settings import Settings, load_settings_or_exit
from settings.logging import configure_logging
from settings.process import freeze_startup_objects
from storage import Storage, open_storage
from store.redis_client import connection_pool
from store.serialization import deserialize, serialize

log = structlog.get_logger("service")


class GatewayState(TypedDict):
    keyring: KeyRing
    settings: Settings
    redis: ArqRedis
    events: JobEventHub
    creates: CreateBatcher
    storage: Storage


def connect_redis(settings: Settings) -> ArqRedis:
    """An arq client over a lazy pool: the gateway starts, and answers 503, while Redis is down."""
    pool = connection_pool(
        settings,
        # Short timeouts: a request fails fast with 503 rather than hanging while Redis is away.
        socket_connect_timeout=2,
        socket_timeout=10,
        health_check_interval=30,
        max_connections=1000,
    )
    return ArqRedis(pool, job_serializer=serialize, job_deserializer=deserialize)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[GatewayState]:
    settings = load_settings_or_exit(require_api_keys=True)
    configure_logging(settings.log_level, settings.log_json)
    storage = open_storage(settings)
    await storage.start()
    root = storage.local_root
    if root is not None:  # the layout the local path checks expect, there before the first job (S3 has no folders)
        (root / "uploads").mkdir(parents=True, exist_ok=True)
        for service in SERVICES:
            (root / "output" / service).mkdir(parents=True, exist_ok=True)
    redis = connect_redis(settings)
    events = JobEventHub(redis, settings)
    await events.start()
    creates = CreateBatcher(redis, settings)
    keyring = KeyRing(settings.api_key_entries(), redis)
    freeze_startup_objects()
    log.info("gateway.started", redis=redis_safe_url(settings.redis_url), auth=bool(settings.api_keys),
             storage=storage.url)
    try:
        yield {"settings": settings, "redis": redis, "events": events, "creates": creates, "storage": storage,
               "keyring": keyring}
    finally:
        await creates.close()
        await events.stop()
        await stop_walks()
        await redis.aclose()
        await storage.close()
        log.info("gateway.stopped")


def redis_safe_url(url: str) -> str:
    """The Redis URL without its password, for logs."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"
