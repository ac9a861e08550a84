"""Submits that arrive together share one Redis round trip, through redis-py's public pipeline.

A submit with nothing else in flight is sent at once. Submits made while one is in flight are
queued and go out together as one pipeline as soon as the event loop gets to them: under load, many
submits share the per-call cost of redis-py and of the round trip (docs/performance.md, F10, F15).
Each create is still its own atomic script.
"""

from __future__ import annotations

import asyncio
from typing import Any

from settings import Settings
from store import job_store
from store.job_store import NewJob


class CreateBatcher:
    """Creates jobs for the gateway; made and closed by the lifespan."""

    def __init__(self, redis: Any, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._pending: list[tuple[NewJob, asyncio.Future[bool]]] = []
        self._in_flight = 0
        self._flushes: set[asyncio.Task[None]] = set()

    async def create(self, job: NewJob) -> bool:
        """As ``store.job_store.create``."""
        if not self._in_flight and not self._pending:
            self._in_flight += 1
            try:
                return await job_store.create(self._redis, self._settings, job)
            finally:
                self._in_flight -= 1
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((job, future))
        if len(self._pending) == 1:
            task = asyncio.create_task(self._flush())
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
        return await future

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        self._in_flight += 1
        try:
            results: list[bool | BaseException] = await job_store.create_many(
                self._redis, self._settings, [job for job, _ in batch]
            )
        except BaseException as exc:  # every waiting request gets the failure, whatever it is
            results = [exc] * len(batch)
            if isinstance(exc, asyncio.CancelledError):
                for _, future in batch:
                    future.cancel()
                raise
        finally:
            self._in_flight -= 1
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue  # its request went away meanwhile
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def close(self) -> None:
        """Let the submits in flight finish."""
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
