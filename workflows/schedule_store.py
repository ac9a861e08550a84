"""Where schedules live in Redis: the hash of schedules (id -> JSON) and the due index beside it.

The index is a sorted set of schedule ids scored by each one's first slot not fired yet (epoch ms;
paused schedules are not in it), so the workers' check every few seconds reads only the schedules
due now, whatever the number of others. Every write of a schedule moves it in the index in the same
script. An index missing (a Redis from before it existed) is rebuilt from the hash once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from store import keys
from store.scripts import Script

DUE = keys.SCHEDULES + ":due"
# Set once the index has been built from the hash; the check rebuilds while it is missing.
INDEXED = keys.SCHEDULES + ":indexed"


class _InlineScript(Script):
    """A ``store.scripts.Script`` whose source is given here: these are the schedules' own, and a
    string ships with the module whatever the package data says."""

    def __init__(self, name: str, source: str) -> None:
        self.name, self.source = name, source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


# KEYS: 1 schedules hash, 2 due index, 3 index-built marker. ARGV: 1 cap, 2 id, 3 JSON, 4 index
# score ('' when paused). Returns 1 when made, 0 when the cap is reached: the count and the write
# cannot interleave. The first schedule of an empty hash marks the index built (nothing to rebuild).
CREATE = _InlineScript("schedule_create", """
local count = redis.call('HLEN', KEYS[1])
if count >= tonumber(ARGV[1]) then return 0 end
if count == 0 then redis.call('SET', KEYS[3], '1') end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2]) end
return 1
""")

# Compare and set one schedule. KEYS: 1 schedules hash, 2 due index. ARGV: 1 id, 2 JSON as read,
# 3 new JSON, 4 index score ('' to leave the index: paused). Returns 1 when written, 0 when the
# schedule changed since it was read (read it again) or is gone.
SWAP = _InlineScript("schedule_swap", """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[4] == '' then redis.call('ZREM', KEYS[2], ARGV[1]) else redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1]) end
return 1
""")


ScoreOf = Callable[[dict[str, Any]], int | None]


async def due(redis: Redis, now_ms: int, score_of: ScoreOf) -> list[tuple[str, dict[str, Any] | None]]:
    """The schedules whose index score has come, each as stored (None: deleted since indexed);
    ``score_of`` gives a schedule's score when the index must be built first."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.exists(INDEXED)
        pipe.zrangebyscore(DUE, "-inf", now_ms)
        indexed, ids = await pipe.execute()
    if not indexed:
        await rebuild(redis, score_of)
        ids = await redis.zrangebyscore(DUE, "-inf", now_ms)
    if not ids:
        return []
    raws = await redis.hmget(keys.SCHEDULES, ids)
    return [(i.decode(), json.loads(raw) if raw else None) for i, raw in zip(ids, raws, strict=True)]


async def rebuild(redis: Redis, score_of: ScoreOf) -> None:
    """Index every schedule of the hash (scores from ``score_of``), then mark the index built.

    A schedule written meanwhile may get a stale score; the check puts that right when it comes."""
    raw = await redis.hgetall(keys.SCHEDULES)
    scores = {i.decode(): score_of(json.loads(v)) for i, v in raw.items()}
    async with redis.pipeline(transaction=True) as pipe:
        indexed = {i: s for i, s in scores.items() if s is not None}
        if indexed:
            pipe.zadd(DUE, indexed)
        pipe.set(INDEXED, "1")
        await pipe.execute()
