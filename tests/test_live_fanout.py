"""The live hub, its Redis feed and each client's feed, without a gateway.

The hub is run against a real Redis (its keyspace notifications) with stand-ins for Starlette's
WebSocket that keep what they were sent; changes are made the way the job store makes them, by
writing the job's record ``ifcflow:job:<id>``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from arq import ArqRedis

from service.live.events import Event, message
from service.live.hub import JobEventHub
from service.live.notifications import NEEDED_FLAGS, enable_keyspace_notifications
from service.live.subscriber import MAX_QUEUED, Subscriber
from settings import Settings
from store import keys
from store.job_view import JobStatus, JobView, Progress
from store.redis_client import connection_pool


def event(n: int, status: str = "in_progress", job_id: str = "job") -> Event:
    view = JobView(job_id=job_id, operation="ifcconvert", status=JobStatus(status), progress=Progress(percent=n))
    return message("progress", view)


def percents(texts: list[str]) -> list[int]:
    return [int(json.loads(t)["progress"]["percent"]) for t in texts]


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait, yielding to the loop, until ``predicate()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


class FakeSocket:
    """The public surface of Starlette's WebSocket the feed uses: ``send_text`` (which waits while
    ``gate`` is closed, as a send to a slow client does), ``close`` and ``receive``."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.closed: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False
        self._gone = asyncio.Event()

    async def send_text(self, data: str) -> None:
        if self.fail:
            raise RuntimeError("the client is gone")
        await self.gate.wait()
        self.texts.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed.append(code)
        self._gone.set()  # as under uvicorn: a close the application sends ends its reads

    async def receive(self) -> dict[str, Any]:
        await self._gone.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    def leave(self) -> None:
        self._gone.set()


def served(sub: Subscriber, ws: FakeSocket, *, close_on_terminal: bool = True) -> asyncio.Task[None]:
    return asyncio.create_task(sub.serve(ws, close_on_terminal=close_on_terminal))


# --- one client's feed ---------------------------------------------------------------------------------


async def test_every_message_goes_out_in_order_through_send_text() -> None:
    ws, sub = FakeSocket(), Subscriber("job")
    serving = served(sub, ws)
    for n in range(3):
        sub.offer(event(n))
    await eventually(lambda: len(ws.texts) == 3, "three messages")
    assert ws.texts == [event(n).text for n in range(3)]
    ws.leave()
    await asyncio.wait_for(serving, 5)


async def test_changes_queued_before_the_socket_is_served_follow_in_order() -> None:
    ws, sub = FakeSocket(), Subscriber("job")
    sub.offer(event(1))
    sub.offer(event(2))
    serving = served(sub, ws)
    sub.offer(event(3))
    await eventually(lambda: len(ws.texts) == 3, "three messages")
    assert percents(ws.texts) == [1, 2, 3]
    ws.leave()
    await asyncio.wait_for(serving, 5)


async def test_a_slow_client_holds_at_most_64_messages_and_resumes_at_the_latest_state() -> None:
    ws, sub = FakeSocket(), Subscriber("job")
    ws.gate.clear()  # the client reads nothing: its sends wait
    serving = served(sub, ws)
    sub.offer(event(0))
    await eventually(sub.queue.empty, "the first send to start")
    for n in range(1, 200):
        sub.offer(event(n))  # never waits, however slow the client
    assert sub.queue.qsize() == MAX_QUEUED == 64
    assert sub.dropped == 199 - MAX_QUEUED
    ws.gate.set()
    await eventually(lambda: bool(ws.texts) and percents(ws.texts)[-1] == 199, "the latest state")
    assert percents(ws.texts) == [0, *range(200 - MAX_QUEUED, 200)]  # the one in flight, then the newest
    sub.offer(event(200))
    await eventually(lambda: percents(ws.texts)[-1] == 200, "the next change")
    ws.leave()
    await asyncio.wait_for(serving, 5)


async def test_the_terminal_message_closes_a_job_socket_and_nothing_follows() -> None:
    ws, sub = FakeSocket(), Subscriber("job")
    serving = served(sub, ws)
    sub.offer(event(1))
    sub.offer(event(2, status="complete"))
    sub.offer(event(3))
    await asyncio.wait_for(serving, 5)  # the close ends the socket's read, and so the endpoint
    assert percents(ws.texts) == [1, 2] and ws.closed == [1000]


async def test_an_all_jobs_socket_stays_open_after_a_terminal_message() -> None:
    ws, sub = FakeSocket(), Subscriber(None)
    serving = served(sub, ws, close_on_terminal=False)
    sub.offer(event(1, status="complete"))
    sub.offer(event(2))
    await eventually(lambda: len(ws.texts) == 2, "both messages")
    assert ws.closed == [] and not serving.done()
    ws.leave()
    await asyncio.wait_for(serving, 5)


async def test_a_client_that_left_ends_its_sender_and_gets_nothing_more() -> None:
    ws, sub = FakeSocket(), Subscriber("job")
    ws.gate.clear()
    serving = served(sub, ws)
    sub.offer(event(1))
    await eventually(sub.queue.empty, "the send to start")
    ws.leave()
    await asyncio.wait_for(serving, 5)  # returns although its send still waits: that send is cancelled
    ws.gate.set()
    sub.offer(event(2))
    await asyncio.sleep(0)
    assert ws.texts == [] and sub.queue.qsize() == 1


async def test_a_failed_send_closes_the_socket_and_ends_the_feed_without_an_error() -> None:
    ws, sub = FakeSocket(), Subscriber("job")
    ws.fail = True
    serving = served(sub, ws)
    sub.offer(event(1))
    await asyncio.wait_for(serving, 5)  # no exception: a client that is gone is no error
    ws.fail = False
    sub.offer(event(2))
    await asyncio.sleep(0)
    assert ws.texts == [] and ws.closed == [1011]


async def test_a_pulling_reader_gets_a_bounded_queue_oldest_dropped() -> None:
    sub = Subscriber("job")
    for n in range(100):
        sub.offer(event(n))
    assert sub.queue.qsize() == MAX_QUEUED and sub.dropped == 100 - MAX_QUEUED
    assert percents([sub.queue.get_nowait().text]) == [100 - MAX_QUEUED]


def test_all_jobs_filters_select_operations_and_statuses() -> None:
    def view(operation: str, status: str) -> JobView:
        return JobView(job_id="j", operation=operation, status=JobStatus(status))

    sub = Subscriber(None, operations={"ifc2json"}, statuses={"complete", "failed"})
    assert sub.wants(view("ifc2json", "complete")) and sub.wants(view("ifc2json", "failed"))
    assert not sub.wants(view("ifcconvert", "complete")) and not sub.wants(view("ifc2json", "in_progress"))
    assert Subscriber(None).wants(view("ifcconvert", "queued"))


def test_one_change_is_encoded_once_and_carries_the_jobs_view() -> None:
    view = JobView(job_id="j", operation="ifcconvert", status=JobStatus.in_progress, progress=Progress(percent=5))
    item = message("progress", view)
    assert (item.kind, item.status) == ("progress", "in_progress")
    assert json.loads(item.text) == {"event": "progress", **view.model_dump(mode="json")}


# --- the hub and its feed, on a real Redis --------------------------------------------------------------


@pytest.fixture
async def writer(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the test's Redis that writes job records as the job store does."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def hub(redis_url: str) -> AsyncIterator[JobEventHub]:
    settings = Settings(redis_url=redis_url)
    redis = ArqRedis(connection_pool(settings))
    live = JobEventHub(redis, settings)
    await live.start()
    assert live.mode == "keyspace"
    # Once one subscription is confirmed the pubsub connection is up: no test's first subscription
    # then comes with the re-read a (re)connection makes of everything followed.
    warm_up = live.subscribe("warm-up")
    await live.watching(warm_up)
    live.unsubscribe(warm_up)
    yield live
    await live.stop()
    await redis.aclose()


async def write(redis: aioredis.Redis, job_id: str, **fields: Any) -> None:
    """One transition: fields of the job's record, written in one HSET."""
    values = {k: json.dumps(v) if isinstance(v, dict) else str(v) for k, v in fields.items()}
    await redis.hset(keys.job_meta(job_id), mapping=values)  # type: ignore[misc]


async def new_job(redis: aioredis.Redis, job_id: str, operation: str = "ifcconvert") -> None:
    await write(redis, job_id, operation=operation, queue="arq:queue", status="queued",
                enqueued_at=int(time.time() * 1000))


def events_of(ws: FakeSocket) -> list[tuple[str, str]]:
    return [(m["event"], m["status"]) for m in map(json.loads, ws.texts)]


async def test_every_change_reaches_every_one_of_many_sockets_and_the_job_end_closes_them(
    hub: JobEventHub, writer: aioredis.Redis
) -> None:
    await new_job(writer, "many")
    subs = [hub.subscribe("many") for _ in range(300)]
    sockets = [FakeSocket() for _ in subs]
    for sub in subs:
        await hub.watching(sub)
    snapshot = await hub.read("many")
    assert snapshot is not None and snapshot.status == JobStatus.queued
    hub.remember(snapshot)
    serving = [served(sub, ws) for sub, ws in zip(subs, sockets, strict=True)]
    now = int(time.time() * 1000)
    changes: list[dict[str, Any]] = [
        {"status": "in_progress", "started_at": now, "tries": 1},
        {"progress": {"percent": 30, "phase": "parsing"}},
        {"progress": {"percent": 70, "phase": "tessellating"}},
        {"status": "complete", "finished_at": now + 1, "result": {"output_files": ["out.glb"]}},
    ]
    for n, change in enumerate(changes, 1):
        await write(writer, "many", **change)
        await eventually(lambda: all(len(ws.texts) == n for ws in sockets), f"change {n} on every socket")  # noqa: B023
    await asyncio.wait_for(asyncio.gather(*serving), 10)
    expected = [("in_progress", "in_progress"), ("progress", "in_progress"), ("progress", "in_progress"),
                ("complete", "complete")]
    assert all(events_of(ws) == expected and ws.closed == [1000] for ws in sockets)
    assert len({ws.texts[-1] for ws in sockets}) == 1
    for sub in subs:
        hub.unsubscribe(sub)


async def test_the_snapshot_comes_first_and_only_later_changes_follow_it(
    hub: JobEventHub, writer: aioredis.Redis
) -> None:
    await new_job(writer, "ordered")
    sub = hub.subscribe("ordered")
    await hub.watching(sub)
    await write(writer, "ordered", status="in_progress", started_at=int(time.time() * 1000))
    await eventually(lambda: sub.queue.qsize() == 1, "the change to be queued")
    # As the endpoints do: what is queued now is no newer than the snapshot about to be read.
    sub.discard_queued()
    snapshot = await hub.read("ordered")
    assert snapshot is not None and snapshot.status == JobStatus.in_progress
    hub.remember(snapshot)
    await write(writer, "ordered", progress=json.dumps({"percent": 40, "phase": "x"}))
    item = await asyncio.wait_for(sub.queue.get(), 10)
    assert item.kind == "progress" and json.loads(item.text)["progress"]["percent"] == 40
    assert sub.queue.empty()
    hub.unsubscribe(sub)


async def test_redis_notifies_the_gateway_of_one_channel_per_followed_job_and_nothing_when_nobody_follows(
    hub: JobEventHub, writer: aioredis.Redis
) -> None:
    async def subscriptions() -> tuple[list[str], int]:
        channels = sorted(c.decode() for c in await writer.pubsub_channels("__keyspace@0__:*"))
        return channels, int(await writer.pubsub_numpat())

    async def until(wanted: tuple[list[str], int]) -> None:
        deadline = time.monotonic() + 5
        while (got := await subscriptions()) != wanted:
            assert time.monotonic() < deadline, got
            await asyncio.sleep(0.01)

    assert await subscriptions() == ([], 0)
    one, two = hub.subscribe("job-1"), hub.subscribe("job-1")
    await hub.watching(one)
    await hub.watching(two)
    assert await subscriptions() == (["__keyspace@0__:ifcflow:job:job-1"], 0)  # confirmed: in place
    every = hub.subscribe(None)
    await hub.watching(every)
    assert await subscriptions() == (["__keyspace@0__:ifcflow:job:job-1"], 1)
    hub.unsubscribe(one)
    hub.unsubscribe(every)
    await until((["__keyspace@0__:ifcflow:job:job-1"], 0))
    hub.unsubscribe(two)
    await until(([], 0))


async def test_the_all_jobs_stream_gets_the_changes_its_filters_let_through(
    hub: JobEventHub, writer: aioredis.Redis
) -> None:
    filtered = hub.subscribe(None, {"ifc2json"}, {"complete"})
    witness = hub.subscribe(None)  # every change of every job, to know when all were seen
    await hub.watching(filtered)
    await hub.watching(witness)
    seen: list[tuple[str, str]] = []
    for job_id, operation in (("convert", "ifcconvert"), ("tojson", "ifc2json")):
        await new_job(writer, job_id, operation)
        for status in ("in_progress", "complete"):
            await write(writer, job_id, status=status)
            while (job_id, status) not in seen:
                item = await asyncio.wait_for(witness.queue.get(), 10)
                seen.append((json.loads(item.text)["job_id"], item.status))
    got = [json.loads(filtered.queue.get_nowait().text) for _ in range(filtered.queue.qsize())]
    assert [(m["job_id"], m["event"]) for m in got] == [("tojson", "complete")]
    hub.unsubscribe(filtered)
    hub.unsubscribe(witness)


async def test_a_job_whose_record_expires_sends_nothing_more(hub: JobEventHub, writer: aioredis.Redis) -> None:
    await new_job(writer, "brief")
    sub, witness = hub.subscribe("brief"), hub.subscribe(None)
    await hub.watching(sub)
    await hub.watching(witness)
    await writer.delete(keys.job_meta("brief"))
    await new_job(writer, "after")
    item = await asyncio.wait_for(witness.queue.get(), 10)  # the hub went past the deletion
    assert json.loads(item.text)["job_id"] == "after" and sub.queue.empty()
    hub.unsubscribe(sub)
    hub.unsubscribe(witness)


@pytest.mark.parametrize("before", ["", "El", "KEA", "Kgh"])
async def test_notifications_are_turned_on_for_a_hash_record_keeping_flags_already_set(
    writer: aioredis.Redis, before: str
) -> None:
    original = (await writer.config_get("notify-keyspace-events"))["notify-keyspace-events"]
    try:
        await writer.config_set("notify-keyspace-events", before)
        assert await enable_keyspace_notifications(writer)
        after = (await writer.config_get("notify-keyspace-events"))["notify-keyspace-events"]
        flags = set(after.decode() if isinstance(after, bytes) else after)
        expanded = flags | (set("g$lshzxetmdn") if "A" in flags else set())
        assert set(NEEDED_FLAGS) == set("Kghx") and set(NEEDED_FLAGS) <= expanded
        assert set(before) <= flags, (before, after)
    finally:
        await writer.config_set("notify-keyspace-events", original)
