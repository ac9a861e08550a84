"""Keyspace notifications for the jobs somebody follows, on the gateway's one pubsub connection.

Why one channel per job: every transition of a job (queued, in_progress, progress, retrying, complete,
failed, aborted) is written to its one record, ``ifcflow:job:<id>``, so that key's keyspace channel
tells of every change. With a pattern for every job, the gateway would receive and parse a notification
for every submit and every state change of every job, followed or not (about 3 % of its CPU under a
submit load with nobody watching). So a job's channel is subscribed while it has followers, and the
pattern for every job's record only while somebody follows every job (``WS /ws/jobs``); with nobody
watching the gateway gets no notification at all.

Why followers wait for Redis's confirmation: a change is only seen if it is written after the
subscription took effect; a follower that reads its snapshot after the confirmation therefore misses
nothing. After a lost connection everything followed is subscribed again and, once confirmed, re-read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from service.live.notifications import enable_keyspace_notifications
from settings import Settings
from store import keys
from store.redis_client import connection_pool

log = structlog.get_logger("service.live")

EVERY_JOB = "*"  # what the all-jobs stream follows: the pattern over every job's record
_CONFIRM_WAIT_S = 2.0


@dataclass
class _Pending:
    """A SUBSCRIBE sent (or to be sent) for one job, until Redis confirms it."""

    done: asyncio.Future[None]
    reread: bool  # on confirmation, re-read the job: nobody waited, so a change may have slipped in


class KeyspaceFeed:
    """Subscribes to what is followed; calls ``on_change(job_id)`` for each notification, and for a job
    (or EVERY_JOB) whose state must be re-read because its subscription was late or renewed."""

    def __init__(self, settings: Settings, on_change: Callable[[str], None]) -> None:
        self._settings = settings
        self._on_change = on_change
        self._wanted: set[str] = set()  # job ids, and EVERY_JOB
        self._pending: dict[str, deque[_Pending]] = {}  # in the order the SUBSCRIBEs go out
        self._outbox: asyncio.Queue[tuple[str, bool]] = asyncio.Queue()
        self._connected = False
        self._subscribed = asyncio.Event()  # something is subscribed: the reader has something to read
        self._prefix = ""  # "__keyspace@<db>__:"

    def follow(self, key: str) -> None:
        """Subscribe to a job's channel (or, for EVERY_JOB, the pattern), once it has its first follower."""
        self._wanted.add(key)
        self._request(key, reread=False)

    def unfollow(self, key: str) -> None:
        """Unsubscribe once the last follower of ``key`` left."""
        self._wanted.discard(key)
        if self._connected:
            self._outbox.put_nowait((key, False))

    async def ready(self, key: str) -> None:
        """Wait until Redis confirmed the subscription for ``key`` (at most a few seconds; after that, a late
        confirmation re-reads the job, so a change in between still reaches the followers)."""
        pending = self._pending.get(key)
        if not pending:
            return
        last = pending[-1]
        try:
            await asyncio.wait_for(asyncio.shield(last.done), _CONFIRM_WAIT_S)
        except TimeoutError:
            last.reread = True

    def _request(self, key: str, *, reread: bool) -> None:
        self._pending.setdefault(key, deque()).append(_Pending(asyncio.get_running_loop().create_future(), reread))
        if self._connected:
            self._outbox.put_nowait((key, True))
        # Not connected: the next connection subscribes to everything wanted, this included.

    def _confirmed(self, key: str) -> None:
        pending = self._pending.get(key)
        if not pending:
            return
        first = pending.popleft()
        if not pending:
            del self._pending[key]
        _resolve(first.done)
        if first.reread:
            self._on_change(key)  # EVERY_JOB: re-read everything followed

    def _resync(self) -> None:
        """A new connection: one SUBSCRIBE per wanted key, re-read once confirmed (a change may have come
        while no connection was subscribed). A follower still waiting waits for this one."""
        old, self._pending = self._pending, {}
        for key, pending in old.items():
            last = pending.pop()
            for p in pending:
                _resolve(p.done)
            if key in self._wanted:
                last.reread = True
                self._pending[key] = deque([last])
            else:
                _resolve(last.done)
        for key in self._wanted - set(self._pending):
            self._pending[key] = deque([_Pending(asyncio.get_running_loop().create_future(), reread=True)])
        for key in self._pending:
            self._outbox.put_nowait((key, True))

    async def run(self) -> None:
        """Follow notifications; after a lost connection subscribe again and re-read what is followed."""
        delay = 0.1
        outage = False
        while True:
            client = Redis(
                connection_pool=connection_pool(self._settings, health_check_interval=10, socket_connect_timeout=2)
            )
            pubsub = client.pubsub()
            tasks: list[asyncio.Task[None]] = []
            try:
                # A restarted Redis forgets CONFIG SET: turn the notifications on again every time.
                await enable_keyspace_notifications(client)
                db = client.connection_pool.connection_kwargs.get("db", 0)
                self._prefix = f"__keyspace@{db}__:"
                self._outbox = asyncio.Queue()
                self._connected = True
                self._resync()
                if outage:
                    log.info("live.pubsub_restored")
                    outage = False
                delay = 0.1
                # Reading and subscribing share the connection; when either fails, both start over.
                tasks = [asyncio.create_task(self._read(pubsub)), asyncio.create_task(self._write(pubsub))]
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
            except (RedisError, OSError) as exc:
                if not outage:
                    log.warning("live.pubsub_lost", error=type(exc).__name__)
                    outage = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                self._connected = False
                for task in tasks:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                        await task
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                    await client.aclose()

    async def _write(self, pubsub: PubSub) -> None:
        """Send (UN)SUBSCRIBEs in the order they were asked for: confirmations are matched to them by order."""
        while True:
            key, subscribe = await self._outbox.get()
            channel = f"{self._prefix}{keys.JOB_META}{key}"  # for EVERY_JOB, the pattern ...:ifcflow:job:*
            if key == EVERY_JOB:
                await (pubsub.psubscribe(channel) if subscribe else pubsub.punsubscribe(channel))
            else:
                await (pubsub.subscribe(channel) if subscribe else pubsub.unsubscribe(channel))
            self._subscribed.set()

    async def _read(self, pubsub: PubSub) -> None:
        records = f"{self._prefix}{keys.JOB_META}".encode()  # what every job's channel starts with
        every_job = records + EVERY_JOB.encode()
        skip = len(records)
        while True:
            if not pubsub.subscribed:  # nothing followed: nothing to read until something is
                self._subscribed.clear()
                await self._subscribed.wait()
                continue
            msg = await pubsub.get_message(timeout=None)
            if msg is None:
                continue
            kind, channel = msg["type"], msg["channel"]
            if kind in ("message", "pmessage"):
                if channel.startswith(records):
                    self._on_change(channel[skip:].decode())
            elif kind == "subscribe" and channel.startswith(records):
                self._confirmed(channel[skip:].decode())
            elif kind == "psubscribe" and channel == every_job:
                self._confirmed(EVERY_JOB)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
