"""One pubsub connection per gateway process, fanned out in-process to every live client.

On each keyspace notification for a job somebody follows, the job is marked dirty; a single reader
reads each dirty job once and sends its new view to every subscriber. Without notifications (CONFIG
refused) the same reader is fed by polling instead, so clients still see every state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, defaultdict

import structlog
from arq import ArqRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from contracts import keys
from contracts.job_view import TERMINAL, JobView, read_job
from contracts.redis_client import connection_pool
from service.live.events import Event, event_kind, message
from service.live.notifications import enable_keyspace_notifications
from settings import Settings

log = structlog.get_logger("service.live")

# Keys whose changes move a job's state; the job id is what follows the prefix.
_WATCHED_PREFIXES = (keys.ARQ_JOB, keys.ARQ_IN_PROGRESS, keys.ARQ_RESULT, keys.ARQ_RETRY, keys.JOB_META)
_MAX_REMEMBERED = 10_000  # last views kept for the all-jobs stream, to tell what changed
_READ_BATCH = 200


class Subscriber:
    """One client's feed: bounded; when full the oldest message goes, so it resumes at the latest state."""

    def __init__(
        self, job_id: str | None, operations: set[str] | None = None, statuses: set[str] | None = None
    ) -> None:
        self.job_id = job_id
        self.operations = operations
        self.statuses = statuses
        # None is the end of the feed (the client left), put there by whoever noticed.
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=64)
        self.dropped = 0

    def wants(self, view: JobView) -> bool:
        if self.operations and view.operation not in self.operations:
            return False
        return not self.statuses or view.status.value in self.statuses

    def offer(self, item: Event | None) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(item)


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
        self.mode = "starting"

    async def start(self) -> None:
        notifications = False
        with contextlib.suppress(RedisError, OSError):
            notifications = await enable_keyspace_notifications(self._redis)
        self.mode = "keyspace" if notifications else "polling"
        feeder = self._listen() if notifications else self._poll()
        self._tasks = [asyncio.create_task(feeder), asyncio.create_task(self._read_loop())]
        log.info("live.started", mode=self.mode)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def subscribe(
        self, job_id: str | None = None, operations: set[str] | None = None, statuses: set[str] | None = None
    ) -> Subscriber:
        sub = Subscriber(job_id, operations, statuses)
        if job_id is None:
            self._all.add(sub)
        else:
            self._by_job[job_id].add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub.job_id is None:
            self._all.discard(sub)
            return
        subs = self._by_job.get(sub.job_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_job[sub.job_id]

    def remember(self, view: JobView) -> None:
        """Record the view a new subscriber was sent as its snapshot, so only later changes follow."""
        self._last[view.job_id] = view
        self._last.move_to_end(view.job_id)
        while len(self._last) > _MAX_REMEMBERED:
            self._last.popitem(last=False)

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
                    views = await asyncio.gather(*(read_job(self._redis, j) for j in batch))
                except (RedisError, OSError):
                    self._dirty.update(batch)  # read again once Redis answers
                    await asyncio.sleep(0.5)
                    continue
                for view in views:
                    if view is not None:
                        self._publish(view)

    def _publish(self, view: JobView) -> None:
        kind = event_kind(self._last.get(view.job_id), view)
        if kind is None:
            return
        self.remember(view)
        item = message(kind, view)
        for sub in self._by_job.get(view.job_id, ()):
            sub.offer(item)
        for sub in self._all:
            if sub.wants(view):
                sub.offer(item)
        if view.status in TERMINAL and view.job_id not in self._by_job and not self._all:
            self._last.pop(view.job_id, None)

    async def _listen(self) -> None:
        """Follow keyspace notifications; after a lost connection resubscribe and re-read what is followed."""
        delay = 0.1
        outage = False
        while True:
            client = Redis(
                connection_pool=connection_pool(self._settings, health_check_interval=10, socket_connect_timeout=2)
            )
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                # A restarted Redis forgets CONFIG SET: turn the notifications on again every time.
                await enable_keyspace_notifications(client)
                db = client.connection_pool.connection_kwargs.get("db", 0)
                channel_prefix = f"__keyspace@{db}__:"
                await pubsub.psubscribe(*(f"{channel_prefix}{p}*" for p in _WATCHED_PREFIXES))
                if outage:
                    log.info("live.pubsub_restored")
                    outage = False
                delay = 0.1
                for job_id in list(self._by_job) + list(self._last):  # states changed while we were away
                    self.mark_dirty(job_id)
                async for msg in pubsub.listen():
                    if msg.get("type") != "pmessage":
                        continue
                    key = msg["channel"].decode()[len(channel_prefix):]
                    changed = _job_id_of(key)
                    if changed:
                        self.mark_dirty(changed)
            except (RedisError, OSError) as exc:
                if not outage:
                    log.warning("live.pubsub_lost", error=type(exc).__name__)
                    outage = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()

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


def _job_id_of(key: str) -> str | None:
    for prefix in _WATCHED_PREFIXES:
        if key.startswith(prefix):
            job_id = key[len(prefix):]
            # arq's cron runs (the service health checks) are the workers' own business, not jobs.
            return None if job_id.startswith("cron:") else job_id
    return None
