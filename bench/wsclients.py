"""Many WebSocket clients of one job, and a known state change to time their messages against.

A change is a new ``progress`` value HSET on the job's ``ifcflow:job:<id>`` record, as the worker
writes it (``store/job_store.py``); each client notes when the message carrying that value arrives.

The clients are ``bench.lightws`` connections, all on the bench's one event loop: a message costs a
few microseconds of client CPU there, against about 40 us with the ``websockets`` library, whose cost
at 1,000 clients (some 40 ms per change) would otherwise be most of what is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from bench.harness import API_KEY
from bench.lightws import HandshakeError, WebSocketClient, connect
from bench.procs import BenchError
from store import keys


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

    def __post_init__(self) -> None:
        # How the gateway's compact JSON spells the value, followed by what may end it (so 12.3 does
        # not match 12.34). A raw '"percent":' outside a string can only be a key.
        token = f'"percent":{json.dumps(self.percent)}'
        self._spelled = (token + ",", token + "}")

    def carried_by(self, text: str | bytes) -> bool:
        """Whether the message carries this change's value: a substring test for the gateway's spelling
        (parsing 1 KB of JSON costs more than reading the frame), else the JSON parsed to be sure."""
        if isinstance(text, str) and (self._spelled[0] in text or self._spelled[1] in text):
            return True
        return _percent(text) == self.percent

    def arrived(self, at: float) -> None:
        self.arrivals.append(at - self.written)
        if len(self.arrivals) >= self.expected:
            self.done.set()


class Audience:
    """``count`` sockets on ``/jobs/{id}/ws``, each reporting every message to the change under way."""

    def __init__(self, gateway_url: str, job_id: str, count: int, connect_concurrency: int = 100) -> None:
        self.url = ws_url(gateway_url, f"/jobs/{job_id}/ws")
        self.count = count
        self.concurrency = connect_concurrency
        self.sockets: list[WebSocketClient] = []
        self.current: Change | None = None
        self.received = 0
        self.connect_s = 0.0

    async def __aenter__(self) -> Audience:
        gate = asyncio.Semaphore(self.concurrency)
        started = time.perf_counter()

        async def one() -> WebSocketClient:
            async with gate:
                snapshot: asyncio.Future[str | bytes] = asyncio.get_running_loop().create_future()

                def first(text: str | bytes, _: float) -> None:
                    if not snapshot.done():
                        snapshot.set_result(text)

                async with asyncio.timeout(60):
                    ws = await connect(self.url, first, {"X-API-Key": API_KEY})
                    self.sockets.append(ws)
                    body = json.loads(await snapshot)
                if body.get("event") != "snapshot":
                    raise BenchError(f"first message was not the snapshot: {body}")
                ws.on_message = self._on_message  # from now on every message is timed
                return ws

        try:
            await asyncio.gather(*(one() for _ in range(self.count)))
        except (OSError, HandshakeError, TimeoutError) as exc:
            await self._close()
            raise BenchError(f"could not open {self.count} sockets: {type(exc).__name__}: {exc}") from exc
        self.connect_s = time.perf_counter() - started
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._close()

    async def _close(self) -> None:
        gate = asyncio.Semaphore(200)

        async def close(ws: WebSocketClient) -> None:
            async with gate:
                await ws.close()

        await asyncio.gather(*(close(ws) for ws in self.sockets))

    def _on_message(self, text: str | bytes, at: float) -> None:
        # Runs inside the socket's data_received: no task, no await, per message.
        self.received += 1
        change = self.current
        if change is not None and change.carried_by(text):
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
