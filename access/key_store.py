"""API keys made at run time (the admin API, ``ifcflow keys``), held in Redis by their digests.

Two hashes: digest (hex) -> the key's record, and key id -> digest, so a key is found by what a
caller presents and revoked by its public id. The key itself is returned once, when it is made.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import orjson
from redis.asyncio import Redis

from access.grants import Caller, Role, check_project, digest, key_id_of, new_key

BY_DIGEST = "ifcflow:api_keys"
BY_ID = "ifcflow:api_key_ids"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A run-time key as listed: never the key itself."""

    key_id: str
    project: str
    role: Role
    name: str
    created_at: str
    created_by: str

    def caller(self) -> Caller:
        return Caller(self.key_id, self.project, self.role, self.name)


def _record(raw: bytes | str) -> KeyRecord:
    data = orjson.loads(raw)
    return KeyRecord(**{**data, "role": Role(data["role"])})


async def create(redis: Redis, project: str, role: Role, name: str, created_by: str) -> tuple[str, KeyRecord]:
    """A new key of ``project`` with ``role``: (the key, shown once; its record)."""
    key = new_key()
    key_digest = digest(key)
    record = KeyRecord(key_id_of(key_digest), check_project(project), role, name,
                       datetime.now(UTC).isoformat(timespec="microseconds"), created_by)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(BY_DIGEST, key_digest.hex(), orjson.dumps(asdict(record)).decode())
        pipe.hset(BY_ID, record.key_id, key_digest.hex())
        await pipe.execute()
    return key, record


async def lookup(redis: Redis, key_digest: bytes) -> Caller | None:
    """The caller a run-time key makes, or None when no such key exists (or it was revoked)."""
    raw = await redis.hget(BY_DIGEST, key_digest.hex())  # type: ignore[misc]
    return _record(raw).caller() if raw else None


async def list_keys(redis: Redis, project: str | None = None) -> list[KeyRecord]:
    """Every run-time key (of ``project`` when given), oldest first."""
    stored = await redis.hgetall(BY_DIGEST)  # type: ignore[misc]
    records = [_record(raw) for raw in stored.values()]
    return sorted((r for r in records if project is None or r.project == project), key=lambda r: r.created_at)


async def revoke(redis: Redis, key_id: str) -> KeyRecord | None:
    """Remove a run-time key; its record, or None when there is no such key."""
    hexdigest = await redis.hget(BY_ID, key_id)  # type: ignore[misc]
    if hexdigest is None:
        return None
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hget(BY_DIGEST, hexdigest)
        pipe.hdel(BY_DIGEST, hexdigest)
        pipe.hdel(BY_ID, key_id)
        raw, _, _ = await pipe.execute()
    return _record(raw) if raw else None
