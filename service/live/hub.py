"""One pubsub connection per gateway process, fanned out in-process to every live client.

On each keyspace notification for a job somebody follows (``service.live.feed``), the job is marked
dirty; a single reader reads each dirty job's record once, encodes its new view once, and puts that one
message in every subscriber's queue (``service.live.subscriber``), never waiting for a client. Without
notifications (CONFIG refused) the same reader is fed by polling instead, so clients still see every
state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, defaultdict

import structlog
from arq import ArqRedis
from redis.exceptions import RedisError

from access.grants import DEFAULT_PROJECT, Caller
from service.live.events import event_kind, message
from service.live.feed import EVERY_JOB, KeyspaceFeed
from service.live.notifications import enable_keyspace_notifications
from service.live.subscriber import Subscriber
from settings import Settings
from store import job_store, keys
from store.job_view import TERMINAL, JobView

__all__ = ["JobEventHub", "Subscriber"]

log = structlog.get_logger("service.live")

_MAX_REMEMBERED = 10_000  # last views kept for the all-jobs stream, to tell what changed
_READ_BATCH = 200


class JobEventHub:
    """Live job events for this gateway process."""

    def __init__(self, redis: ArqRedis, settings: Settings, poll_interval: float = 0.5) -> None:
        self._redis = redis
        self._settings = settings
        self._poll_interval = poll_interval
        self._by_job: dict[str, set[Subscriber]] = defaultdict(set)
        self._all: set[Subscriber] = set()
        self._last: OrderedDict[str, JobView] = OrderedDict()
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._feed: KeyspaceFeed | None = None  # None: polling
        self.mode = "starting"

    async def start(self) -> None:
        notifications = False
        with contextlib.suppress(RedisError, OSError):
            notifications = await enable_keyspace_notifications(self._redis)
        self.mode = "keyspace" if notifications else "polling"
        if notifications:
            self._feed = KeyspaceFeed(self._settings, self._changed)
        feeder = self._feed.run() if self._feed is not None else self._poll()
        self._tasks = [asyncio.create_task(feeder), asyncio.create_task(self._read_loop())]
        log.info("live.started", mode=self.mode)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def subscribe(
        self, job_id: str | None = None, operations: set[str] | None = None, statuses: set[str] | None = None,
        *, caller: Caller | None = None,
    ) -> Subscriber:
        """Follow one job (or every job: of ``caller``'s project, of all for an admin or with no caller);
        ``await watching(sub)`` before reading the snapshot. Whether ``caller`` may see the one job is
        the route's check, on the snapshot."""
        project = None if caller is None or caller.admin else caller.project
        sub = Subscriber(job_id, operations, statuses, project, caller.project if caller else DEFAULT_PROJECT)
        if job_id is None:
            if not self._all and self._feed is not None:
                self._feed.follow(EVERY_JOB)
            self._all.add(sub)
        else:
            if job_id not in self._by_job and self._feed is not None:
                self._feed.follow(job_id)
            self._by_job[job_id].add(sub)
        return sub

    async def watching(self, sub: Subscriber) -> None:
        """Until Redis notifies this gateway of changes to what ``sub`` follows: a snapshot read after this
        misses no change (without notifications, polling re-reads followed jobs anyway)."""
        if self._feed is not None:
            await self._feed.ready(EVERY_JOB if sub.job_id is None else sub.job_id)

    async def read(self, job_id: str) -> JobView | None:
        """The job's current view (a snapshot for a new subscriber), or None when there is no such job."""
        return await job_store.get(self._redis, job_id)

    def unsubscribe(self, sub: Subscriber) -> None:
        """Stop feeding ``sub``; the last follower of a job (or of every job) ends its subscription."""
        if sub.job_id is None:
            self._all.discard(sub)
            if not self._all and self._feed is not None:
                self._feed.unfollow(EVERY_JOB)
            return
        subs = self._by_job.get(sub.job_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_job[sub.job_id]
                if self._feed is not None:
                    self._feed.unfollow(sub.job_id)

    def remember(self, view: JobView) -> None:
        """Record the view a new subscriber was sent as its snapshot, so only later changes follow."""
        self._last[view.job_id] = view
        self._last.move_to_end(view.job_id)
        while len(self._last) > _MAX_REMEMBERED:
            self._last.popitem(last=False)

    def _changed(self, job_id: str) -> None:
        if job_id == EVERY_JOB:  # the all-jobs patterns were (re)subscribed: what changed meanwhile is unknown
            for followed in list(self._by_job) + list(self._last):
                self.mark_dirty(followed)
        else:
            self.mark_dirty(job_id)

    def mark_dirty(self, job_id: str) -> None:
        if self._all or job_id in self._by_job:
            self._dirty.add(job_id)
            self._wake.set()

    async def _read_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._dirty:
                batch = [self._dirty.pop() for _ in range(min(len(self._dirty), _READ_BATCH))]
                try:
                    views = await job_store.get_many(self._redis, batch)  # one round trip for the batch
                except (RedisError, OSError):
                    self._dirty.update(batch)  # read again once Redis answers
                    await asyncio.sleep(0.5)
                    continue
                for view in views:
                    self._publish(view)

    def _publish(self, view: JobView) -> None:
        kind = event_kind(self._last.get(view.job_id), view)
        if kind is None:
            return
        self.remember(view)
        item = message(kind, view)  # encoded once, however many subscribers
        # offer() only queues (no await), so nobody can (un)subscribe while these loops run.
        for sub in self._by_job.get(view.job_id, ()):
            sub.offer(item)
        for sub in self._all:
            if sub.wants(view):
                sub.offer(item)
        if view.status in TERMINAL and view.job_id not in self._by_job and not self._all:
            self._last.pop(view.job_id, None)

    async def _poll(self) -> None:
        """Without notifications: re-read followed jobs, and the newest ones for the all-jobs stream."""
        while True:
            for job_id in list(self._by_job):
                self.mark_dirty(job_id)
            if self._all:
                with contextlib.suppress(RedisError, OSError):
                    for raw in await self._redis.zrevrange(keys.RECENT_JOBS, 0, 199):
                        self.mark_dirty(raw.decode())
            await asyncio.sleep(self._poll_interval)

