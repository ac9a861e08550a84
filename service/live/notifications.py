"""Turning on the keyspace notifications live status needs, without dropping flags already set."""

from __future__ import annotations

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

log = structlog.get_logger("service.live")

# A job's state is one hash, its record: K for keyspace channels (named after the key, so one per job),
# h for HSET/HDEL (every transition), g for DEL/EXPIRE, x for the record expiring.
NEEDED_FLAGS = "Kghx"
# Redis's "A" stands for every event class; spelled out so a union with it is checked letter by letter.
_ALL_CLASSES = "g$lshzxetmdn"


def _expand(flags: str) -> set[str]:
    letters = set(flags)
    if "A" in letters:
        letters.discard("A")
        letters |= set(_ALL_CLASSES)
    return letters


async def enable_keyspace_notifications(redis: Redis) -> bool:
    """True when notifications are on (set now or before); False when CONFIG is refused (managed Redis)."""
    try:
        current = (await redis.config_get("notify-keyspace-events")).get("notify-keyspace-events", "")
        if isinstance(current, bytes):
            current = current.decode()
        have = _expand(current)
        if set(NEEDED_FLAGS) <= have:
            return True
        merged = "".join(sorted(have | set(NEEDED_FLAGS)))
        await redis.config_set("notify-keyspace-events", merged)
        return True
    except ResponseError as exc:
        log.warning(
            "live.notifications_unavailable",
            error=str(exc),
            hint="CONFIG is refused; live status falls back to polling Redis. "
            f"Set notify-keyspace-events to include '{NEEDED_FLAGS}' on the server to get push updates.",
        )
        return False
    except RedisError as exc:
        log.warning("live.notifications_unknown", error=str(exc))
        return False
