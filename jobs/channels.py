"""The worker's pubsub channels: abort requests (``jobs/aborts.py``) and, for ``python -m jobs``, the
queue's wake-ups (``jobs/arq_adapter.py``), on one connection made and closed by the worker's hooks."""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from jobs import aborts
from jobs.context import WorkerContext
from store import keys
from store.redis_client import connection_pool

log = structlog.get_logger("jobs.channels")


async def listen(ctx: WorkerContext) -> None:
    """Until cancelled: abort the jobs named on the abort channel, and wake the worker's claims on a
    submit to its queue. Every few seconds also sweep arq's abort set, for a request missed while the
    connection was down; a (re)subscription wakes the claims once, for a submit missed then."""
    settings = ctx["settings"]
    wake = ctx.get("wake")
    wake_channel = keys.wake_channel(settings.queue_name).encode()
    channels = [keys.ABORT_CHANNEL] + ([wake_channel.decode()] if wake is not None else [])
    outage = False
    while True:
        client = Redis(connection_pool=connection_pool(settings, socket_connect_timeout=2, health_check_interval=10))
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(*channels)
            if outage:
                log.info("worker.listener_restored")
                outage = False
            if wake is not None:
                wake()
            next_sweep = 0.0
            while True:
                # Swept by time, not per message: a burst of wake-ups must not cost a sweep each.
                if time.monotonic() >= next_sweep:
                    await aborts.sweep(ctx)
                    next_sweep = time.monotonic() + settings.heartbeat_interval
                message = await pubsub.get_message(timeout=max(next_sweep - time.monotonic(), 0.0))
                while message is not None:
                    if message["channel"] == wake_channel and wake is not None:
                        wake()
                    else:
                        aborts.abort(ctx, message["data"].decode())
                    message = await pubsub.get_message(timeout=0)
        except (RedisError, OSError) as exc:
            if not outage:
                log.warning("worker.listener_lost", error=type(exc).__name__)
                outage = True
            await asyncio.sleep(1)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
                await client.aclose()
