"""The gateway's lookup of a presented key: configured keys first (in memory), then run-time keys
(Redis), with a short cache so a busy route does not ask Redis on every request."""

from __future__ import annotations

import time
from collections import OrderedDict

from redis.asyncio import Redis

from access import key_store
from access.grants import Caller, configured_grants, digest, match

# A revoked run-time key stops working on every gateway within this many seconds.
CACHE_SECONDS = 2.0
_CACHE_ENTRIES = 10_000


class KeyRing:
    """Who a presented key is; made once per gateway process, in its lifespan."""

    def __init__(self, entries: list[str], redis: Redis) -> None:
        self._grants = configured_grants(entries)
        self._redis = redis
        self._cache: OrderedDict[bytes, tuple[float, Caller | None]] = OrderedDict()

    @property
    def configured(self) -> bool:
        return bool(self._grants)

    def configured_callers(self) -> list[Caller]:
        """Who each configured key makes (never the key), in the setting's order, once per key id."""
        return list({grant.caller.key_id: grant.caller for grant in self._grants}.values())

    def is_configured(self, key_id: str) -> bool:
        """Whether ``key_id`` names a key of ``IFCFLOW_API_KEYS`` (only a restart takes it away)."""
        return any(grant.caller.key_id == key_id for grant in self._grants)

    def configured_caller(self, presented: str) -> Caller | None:
        """The caller of a configured key (no I/O), or None."""
        return match(digest(presented), self._grants)

    async def authenticate(self, presented: str) -> Caller | None:
        """The caller ``presented`` makes, or None for no valid key."""
        key_digest = digest(presented)
        found = match(key_digest, self._grants)
        if found is not None:
            return found
        now = time.monotonic()
        cached = self._cache.get(key_digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await key_store.lookup(self._redis, key_digest)
        self._cache[key_digest] = (now + CACHE_SECONDS, found)
        self._cache.move_to_end(key_digest)
        while len(self._cache) > _CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return found

    def forget(self, key_id: str) -> None:
        """Drop a revoked key from this process's cache at once (other gateways within CACHE_SECONDS)."""
        for key_digest, (_, caller) in list(self._cache.items()):
            if caller is not None and caller.key_id == key_id:
                del self._cache[key_digest]
