"""When peers' jobs end: a pub/sub listener on the channel each peer publishes a job's end on.

Celery's Redis result backend publishes the result document on ``celery-task-meta-<id>`` as it stores
it; SAQ publishes the job's new status on ``saq:job:<queue>:<key>``. Both are the peers' own messages
(nothing is added to their work); the bench only listens. Times are ``time.perf_counter()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from bench.procs import BenchError

# (channel, data) -> (job id, succeeded), or None for a message that is no job's end.
Parse = Callable[[bytes, bytes], tuple[str, bool] | None]


class DoneWatcher:
    """``async with DoneWatcher(url, "celery-task-meta-*", parse) as w:`` then ``expect`` and ``wait``."""

    def __init__(self, redis_url: str, pattern: str, parse: Parse) -> None:
        self._client = Redis.from_url(redis_url)
        self._pattern = pattern
        self._parse = parse
        self.ended: dict[str, float] = {}
        self.failed: set[str] = set()
        self._pending: set[str] = set()
        self._expected: set[str] = set()
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> DoneWatcher:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        await pubsub.psubscribe(self._pattern)
        self._task = asyncio.create_task(self._listen(pubsub))
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()

    async def _listen(self, pubsub: PubSub) -> None:
        try:
            async for msg in pubsub.listen():
                if msg.get("type") != "pmessage":
                    continue
                parsed = self._parse(msg["channel"], msg["data"])
                if parsed is None:
                    continue
                job_id, ok = parsed
                if job_id in self.ended:
                    continue
                self.ended[job_id] = time.perf_counter()
                if not ok:
                    self.failed.add(job_id)
                if job_id in self._pending:
                    self._pending.discard(job_id)
                    if not self._pending:
                        self._done.set()
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    def expect(self, ids: set[str]) -> None:
        """Start waiting for ``ids`` (call before any of them can end)."""
        self._expected = set(ids)
        self._pending = {i for i in ids if i not in self.ended}
        self._done = asyncio.Event()
        if not self._pending:
            self._done.set()

    async def wait(self, within: float) -> float:
        """Until every expected job ended; returns when the last one did. Failed jobs raise."""
        try:
            await asyncio.wait_for(self._done.wait(), within)
        except TimeoutError:
            missing = f"{len(self._pending)} of {len(self._expected)}"
            raise BenchError(f"{missing} jobs never ended ({self._pattern})") from None
        failed = len(self._expected & self.failed)
        if failed:
            raise BenchError(f"{failed} of {len(self._expected)} jobs failed ({self._pattern})")
        return max(self.ended[i] for i in self._expected) if self._expected else time.perf_counter()
