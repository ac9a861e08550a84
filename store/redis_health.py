"""Whether Redis can take writes, and how close it is to its memory limit: for ``/health`` and metrics.

A Redis at ``maxmemory`` under ``noeviction`` still answers reads and PING, so only a write tells
that submits and job ends would fail; an evicting Redis answers writes by dropping keys, which only
``evicted_keys`` shows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

PROBE_KEY = "ifcflow:health:write-probe"


@dataclass(frozen=True)
class RedisHealth:
    writable: bool
    write_error: str | None
    used_memory: int  # bytes
    maxmemory: int  # bytes; 0 means no limit
    maxmemory_policy: str
    evicted_keys: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.writable,
            "writable": self.writable,
            "write_error": self.write_error,
            "used_memory_bytes": self.used_memory,
            "maxmemory_bytes": self.maxmemory,
            "maxmemory_policy": self.maxmemory_policy,
            "evicted_keys": self.evicted_keys,
        }


async def probe(redis: Redis) -> RedisHealth:
    """INFO memory and stats, and one small write (with a TTL) that fails while Redis refuses writes.

    Raises ``RedisError``/``OSError`` when Redis cannot be reached at all (the caller bounds the time)."""
    memory = await redis.info("memory")
    stats = await redis.info("stats")
    error: str | None = None
    try:
        await redis.set(PROBE_KEY, str(int(time.time() * 1000)), px=10_000)
    except (RedisConnectionError, RedisTimeoutError):
        raise  # unreachable, not full: the caller says "unavailable"
    except RedisError as exc:  # OOM under noeviction, READONLY replica, MISCONF (failed save), ...
        error = f"{type(exc).__name__}: {exc}"
    return RedisHealth(
        writable=error is None,
        write_error=error,
        used_memory=int(memory.get("used_memory", 0)),
        maxmemory=int(memory.get("maxmemory", 0)),
        maxmemory_policy=str(memory.get("maxmemory_policy", "")),
        evicted_keys=int(stats.get("evicted_keys", 0)),
    )
