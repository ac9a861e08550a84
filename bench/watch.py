"""When keys appear: a keyspace-notification listener that time-stamps the first event of each job.

Redis runs with ``notify-keyspace-events Kg$hxz`` (what the gateway switches on), so e.g. the first
event on ``arq:result:<id>`` is the job's result being written, and on ``arq:in-progress:<id>`` a
worker claiming it. Times are ``time.perf_counter()`` of this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from bench.procs import BenchError


class KeyWatcher:
    """``async with KeyWatcher(url, "arq:result:") as w:`` then ``await w.wait(ids)``."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self._client = Redis.from_url(redis_url)
        self._prefix = prefix
        self._channel = f"__keyspace@0__:{prefix}"
        self.seen: dict[str, float] = {}
        self._pending: set[str] = set()
        self._expected: set[str] = set()
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> KeyWatcher:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        await pubsub.psubscribe(self._channel + "*")
        self._task = asyncio.create_task(self._listen(pubsub))
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()

    async def _listen(self, pubsub: PubSub) -> None:
        cut = len(self._channel)
        try:
            async for msg in pubsub.listen():
                if msg.get("type") != "pmessage":
                    continue
                job_id = msg["channel"][cut:].decode()
                if job_id not in self.seen:
                    self.seen[job_id] = time.perf_counter()
                    if job_id in self._pending:
                        self._pending.discard(job_id)
                        if not self._pending:
                            self._done.set()
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    def expect(self, ids: set[str]) -> None:
        """Start waiting for ``ids`` (call before they can appear)."""
        self._expected = set(ids)
        self._pending = {i for i in ids if i not in self.seen}
        self._done = asyncio.Event()
        if not self._pending:
            self._done.set()

    async def wait(self, within: float) -> float:
        """Until every expected id was seen; returns the time the last one was."""
        try:
            await asyncio.wait_for(self._done.wait(), within)
        except TimeoutError:
            raise BenchError(f"{len(self._pending)} of the expected {self._prefix}* keys never appeared") from None
        return max(self.seen[i] for i in self._expected) if self._expected else time.perf_counter()
