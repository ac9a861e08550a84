"""Writes a finished try must not lose: retried with backoff until Redis takes them.

A full Redis (``OOM command not allowed``), a failover or a restart makes writes fail for a while;
the end of a job (arq's result, our record) is retried with backoff and jitter instead of escaping
into arq's poll loop, which would stop the worker with every job it runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from redis.exceptions import RedisError

from jobs.backoff import retry_delay

log = structlog.get_logger("jobs.worker")
T = TypeVar("T")
_BASE_S, _CAP_S = 0.1, 5.0


async def until_written(what: str, write: Callable[[], Awaitable[T]]) -> T:
    """``await write()`` until it succeeds; Redis errors and lost connections wait and try again."""
    attempt = 0
    while True:
        try:
            result = await write()
        except (RedisError, OSError) as exc:
            attempt += 1
            if attempt == 1:
                log.warning("redis.write_failed", what=what, error=f"{type(exc).__name__}: {exc}"[:300])
            await asyncio.sleep(retry_delay(attempt, _BASE_S, _CAP_S))
            continue
        if attempt:
            log.info("redis.write_recovered", what=what, attempts=attempt + 1)
        return result
