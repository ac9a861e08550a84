"""Many WebSocket clients of one job, and a known state change to time their messages against.

A change is a new ``progress`` value HSET on the job's ``ifcflow:job:<id>`` record, as the worker
writes it (``jobs/job_record.py``); each client notes when the message carrying that value arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.harness import API_KEY
from bench.procs import BenchError
from contracts import keys


def ws_url(http_url: str, path: str) -> str:
    return "ws" + http_url.removeprefix("http") + path


@dataclass
class Change:
    """One state change under way: when it was written, and who has seen it."""

    percent: float
    written: float
    expected: int
    arrivals: list[float] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def arrived(self, at: float) -> None:
        self.arrivals.append(at - self.written)
        if len(self.arrivals) >= self.expected:
            self.done.set()


class Audience:
    """``count`` sockets on ``/jobs/{id}/ws``, each reading every message and reporting it to the change."""

    def __init__(self, gateway_url: str, job_id: str, count: int, connect_concurrency: int = 100) -> None:
        self.url = ws_url(gateway_url, f"/jobs/{job_id}/ws")
        self.count = count
        self.concurrency = connect_concurrency
        self.sockets: list[ClientConnection] = []
        self.current: Change | None = None
        self.received = 0
        self.readers: list[asyncio.Task[None]] = []
        self.connect_s = 0.0

    async def __aenter__(self) -> Audience:
        gate = asyncio.Semaphore(self.concurrency)
        started = time.perf_counter()

        async def one() -> ClientConnection:
            async with gate:
                ws = await connect(
                    self.url, additional_headers={"X-API-Key": API_KEY}, ping_interval=None, proxy=None,
                    open_timeout=60, max_queue=None,
                )
                snapshot = json.loads(await ws.recv())
                if snapshot.get("event") != "snapshot":
                    raise BenchError(f"first message was not the snapshot: {snapshot}")
                return ws

        try:
            self.sockets = list(await asyncio.gather(*(one() for _ in range(self.count))))
        except (OSError, ConnectionClosed, TimeoutError) as exc:
            await self._close()
            raise BenchError(f"could not open {self.count} sockets: {type(exc).__name__}: {exc}") from exc
        self.connect_s = time.perf_counter() - started
        self.readers = [asyncio.create_task(self._read(ws)) for ws in self.sockets]
        return self

    async def __aexit__(self, *_: object) -> None:
        for task in self.readers:
            task.cancel()
        for task in self.readers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close()

    async def _close(self) -> None:
        gate = asyncio.Semaphore(200)

        async def close(ws: ClientConnection) -> None:
            async with gate:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 5)

        await asyncio.gather(*(close(ws) for ws in self.sockets))

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                at = time.perf_counter()
                self.received += 1
                change = self.current
                if change is not None and _percent(raw) == change.percent:
                    change.arrived(at)


def _percent(raw: str | bytes) -> float | None:
    progress = json.loads(raw).get("progress")
    return None if not progress else float(progress["percent"])


class Changer:
    """Writes successive progress values into one job's record; values never repeat within a run."""

    _next = 0

    def __init__(self, redis: Redis, job_id: str) -> None:
        self.redis = redis
        self.key = keys.job_meta(job_id)

    def next_percent(self) -> float:
        Changer._next += 1
        return (Changer._next % 999 + 1) / 10  # 0.1 ... 99.9, each different from the one before

    async def write(self, percent: float) -> None:
        body = json.dumps({"percent": percent, "phase": "bench"})
        await self.redis.hset(self.key, "progress", body)  # type: ignore[misc]


async def fan_out(audience: Audience, changer: Changer, within: float = 15.0) -> Change:
    """One change, waited for until every socket has its message (or ``within`` seconds)."""
    percent = changer.next_percent()
    change = Change(percent, time.perf_counter(), audience.count)
    audience.current = change
    await changer.write(percent)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(change.done.wait(), within)
    audience.current = None
    return change


def job_of(body: bytes) -> str:
    parsed: dict[str, Any] = json.loads(body)
    return str(parsed["job_id"])
