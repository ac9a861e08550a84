"""The job store's Lua scripts (``store/lua/*.lua``), run through redis-py's public ``evalsha``.

Each script is one atomic step of a job's life; the files say what they take and return, and
``tests/test_job_store_scripts.py`` runs each one against a real Redis.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError


class Script:
    """One Lua script: sent by its SHA, loaded again when Redis has forgotten it (a restart)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = resources.files("store").joinpath("lua", f"{name}.lua").read_text()
        self.sha = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, redis: Redis, keys: list[str], args: list[Any]) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[misc]
        except NoScriptError:
            await redis.script_load(self.source)
            return await redis.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[misc]


    async def many(self, redis: Redis, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """Run the script once per ``(keys, args)`` in one pipeline (replies and errors in order)."""
        replies: list[Any] = [NoScriptError()] * len(calls)
        for attempt in (1, 2):
            todo = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
            if not todo:
                break
            if attempt == 2:
                await redis.script_load(self.source)  # Redis restarted and forgot it: load, send those again
            async with redis.pipeline(transaction=False) as pipe:
                for i in todo:
                    keys, args = calls[i]
                    pipe.evalsha(self.sha, len(keys), *keys, *args)
                for i, reply in zip(todo, await pipe.execute(raise_on_error=False), strict=True):
                    replies[i] = reply
        return replies


CREATE = Script("create")
CLAIM = Script("claim")
START = Script("start")
FINISH = Script("finish")
CANCEL = Script("cancel")
ABORT = Script("abort")
REQUEUE = Script("requeue")
REAP = Script("reap")
SLOT_ACQUIRE = Script("slot_acquire")
ALL = (CREATE, CLAIM, START, FINISH, CANCEL, ABORT, REQUEUE, REAP, SLOT_ACQUIRE)
